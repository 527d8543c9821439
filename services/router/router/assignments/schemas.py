"""What the assignment endpoints answer."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

EXAMPLE_LEAD_ID = "5f0c2a0e-8d1c-4f4e-9a57-2f1f9f0c1d2e"

_EXPLANATION_EXAMPLE: dict[str, Any] = {
    "version": "3",
    "rule": "emea",
    "action": {"type": "team", "team": "team-emea", "strategy": "weighted_round_robin"},
    "fallbacks": [{"type": "queue", "team": "team-emea"}],
    "evaluated": [
        {"rule": "enterprise_accounts", "matched": False, "at": "/rules/0/when/all/0",
         "field": "account.owner_rep_id", "seen": None, "reason": "account.owner_rep_id has no value"},
        {"rule": "emea", "matched": True},
    ],
    "evaluated_omitted": 0,
    "outcome": "assigned",
    "rep_id": "rep-ada",
    "team_id": "team-emea",
    "steps": [
        {"step": 0, "action": {"type": "team", "team": "team-emea", "strategy": "weighted_round_robin"},
         "outcome": "chosen", "rep_id": "rep-ada",
         "skipped": [{"rep_id": "rep-bob", "reason": "out_of_office"}], "skipped_omitted": 0,
         "pick": {"pool_id": "team:team-emea", "strategy": "weighted_round_robin", "sequence": 41, "rep_id": "rep-ada",
                  "candidates": [
                      {"rep_id": "rep-ada", "weight": 100, "load": 12, "chosen": True, "reason": "highest_credit",
                       "entry": "stayed", "credit_before": 0.5, "credit_compared": 1.0, "credit_after": 0.0},
                      {"rep_id": "rep-cy", "weight": 100, "load": 9, "chosen": False, "reason": "lower_credit",
                       "entry": "stayed", "credit_before": -0.5, "credit_compared": 0.0, "credit_after": 0.0}]}},
    ],
}  # fmt: skip


class AssignmentPublic(BaseModel):
    """One routing decision about a lead, with its whole explanation."""

    id: str
    sequence: int = Field(description="1 for the first decision, then one more per reassignment.")
    outcome: str = Field(description="`assigned` (to a rep), `queued` (a team's queue) or `nurtured` (to marketing).")
    rep_id: str | None
    team_id: str | None
    rule_path: list[str] = Field(description="The rules walked, the matched one last (at most 20).")
    candidates: list[str] = Field(description="The reps considered (at most 20).")
    routing_version: str = Field(description="The routing agreement version, or `builtin` before one is signed.")
    trigger: str = Field(description="`routed`, `sla_breach` or `manual`.")
    reason: str | None
    previous_assignment_id: str | None
    assigned_at: datetime
    explanation: dict[str, Any] = Field(
        description="Each rule evaluated (matched, or the condition that failed), each action tried, every candidate "
        "and why it was or was not chosen.",
        examples=[_EXPLANATION_EXAMPLE],
    )


class LeadAssignments(BaseModel):
    """A lead's current routing decision and every one before it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "lead_id": EXAMPLE_LEAD_ID,
                    "current": {
                        "id": "0b7c3e9a-1d0f-4a55-8f57-6c0c1c8a9b10",
                        "sequence": 1,
                        "outcome": "assigned",
                        "rep_id": "rep-ada",
                        "team_id": "team-emea",
                        "rule_path": ["enterprise_accounts", "emea"],
                        "candidates": ["rep-bob", "rep-ada", "rep-cy"],
                        "routing_version": "3",
                        "trigger": "routed",
                        "reason": None,
                        "previous_assignment_id": None,
                        "assigned_at": "2026-11-27T09:30:00.412Z",
                        "explanation": _EXPLANATION_EXAMPLE,
                    },
                    "history": [],
                }
            ]
        }
    )

    lead_id: str
    current: AssignmentPublic
    history: list[AssignmentPublic] = Field(description="Every decision, first to current (current included).")
