"""What `/v1/sla/...` answers: a lead's obligations, the obligations at risk and the compliance report."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

EXAMPLE_LEAD_ID = "7f3c8a52-1d47-4c36-9a55-0c1f2e6b9d10"

_OBLIGATION_EXAMPLE: dict[str, Any] = {
    "obligation": "first_response",
    "status": "warning",
    "assignment_id": "0b7c3e9a-1d0f-4a55-8f57-6c0c1c8a9b10",
    "sequence": 2,
    "rep_id": "rep-ada",
    "team_id": "team-emea",
    "grade": "A1",
    "source": "webinar",
    "policy_version": "3",
    "clock": "business",
    "within_seconds": 900.0,
    "started_at": "2026-11-27T09:30:00Z",
    "warn_at": "2026-11-27T09:42:00Z",
    "due_at": "2026-11-27T09:45:00Z",
    "warned_at": "2026-11-27T09:42:00.210Z",
    "closed_at": None,
    "close_reason": None,
    "responded_at": None,
    "response_seconds": None,
    "response_business_seconds": None,
    "remaining_seconds": 120.0,
}
_CLOSED_EXAMPLE: dict[str, Any] = {
    **_OBLIGATION_EXAMPLE,
    "status": "replaced",
    "assignment_id": "5d2e1f0a-3b4c-4d5e-8f90-a1b2c3d4e5f6",
    "sequence": 1,
    "rep_id": "rep-bob",
    "started_at": "2026-11-27T09:20:00Z",
    "warn_at": "2026-11-27T09:32:00Z",
    "due_at": "2026-11-27T09:35:00Z",
    "warned_at": None,
    "closed_at": "2026-11-27T09:29:58Z",
    "close_reason": "reassigned",
    "remaining_seconds": None,
}


class ObligationPublic(BaseModel):
    """One obligation of one of the lead's assignments (an SLA timer) and where it stands."""

    obligation: str = Field(description="The policy's obligation, e.g. `first_response`.")
    status: str = Field(
        description="`running`, `warning`, `breached`, `met`, `cancelled`, or `replaced` (a reassignment closed it "
        "and the next assignment's obligation carries on)."
    )
    assignment_id: str
    sequence: int = Field(description="The assignment's sequence: 1, then one more per reassignment.")
    rep_id: str
    team_id: str | None = Field(description="The owning team; null when the assignment named none.")
    grade: str | None
    source: str | None
    policy_version: str = Field(description="The SLA version whose terms apply (`builtin` before one was signed).")
    clock: str = Field(description="`wall` or `business` (the owning team's working hours).")
    within_seconds: float = Field(description="The window, in seconds of the clock.")
    started_at: datetime
    warn_at: datetime | None
    due_at: datetime
    warned_at: datetime | None
    closed_at: datetime | None = Field(description="When it was met, breached, cancelled or replaced.")
    close_reason: str | None
    responded_at: datetime | None = Field(description="The first activity that meets it, even after a breach.")
    response_seconds: float | None = Field(description="Wall seconds from the start to the response.")
    response_business_seconds: float | None = Field(
        description="Business seconds on the owning team's clock from the start to the response."
    )
    remaining_seconds: float | None = Field(
        description="Open ones: wall seconds until `due_at`, 0 when it passed and the breach is not yet recorded; "
        "null when closed."
    )


class LeadObligations(BaseModel):
    """Every SLA obligation of a lead, the newest assignment first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"lead_id": EXAMPLE_LEAD_ID, "obligations": [_OBLIGATION_EXAMPLE, _CLOSED_EXAMPLE]}]
        }
    )

    lead_id: str
    obligations: list[ObligationPublic]


class AtRiskObligation(BaseModel):
    """An open obligation already warned or due soon."""

    lead_id: str
    obligation: str
    status: str = Field(description="`running` or `warning`.")
    assignment_id: str
    rep_id: str
    team_id: str | None
    grade: str | None
    source: str | None
    clock: str
    started_at: datetime
    warned_at: datetime | None
    due_at: datetime
    remaining_seconds: float = Field(description="Wall seconds until `due_at`; 0 when it passed.")


class AtRiskTeam(BaseModel):
    """One team's obligations at risk: every match, not only those listed."""

    team_id: str | None = Field(description="null: obligations of assignments that name no team.")
    at_risk: int
    warned: int = Field(description="Of those, already past their warning point.")
    soonest_due_at: datetime


class AtRisk(BaseModel):
    """Open obligations warned or due within `within_seconds`, the soonest due first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "within_seconds": 900,
                    "as_of": "2026-11-27T09:43:00Z",
                    "obligations": [
                        {
                            key: _OBLIGATION_EXAMPLE[key]
                            for key in AtRiskObligation.model_fields
                            if key in _OBLIGATION_EXAMPLE
                        }
                        | {"lead_id": EXAMPLE_LEAD_ID}
                    ],
                    "truncated": False,
                    "teams": [
                        {"team_id": "team-emea", "at_risk": 1, "warned": 0, "soonest_due_at": "2026-11-27T09:45:00Z"}
                    ],
                }
            ]
        }
    )

    within_seconds: int
    as_of: datetime = Field(description="The instant `remaining_seconds` and `within_seconds` count from.")
    obligations: list[AtRiskObligation]
    truncated: bool = Field(description="True when more matched than `limit` (the list is a plain cap, no cursor).")
    teams: list[AtRiskTeam] = Field(
        description="Per team, every match counted (the cap does not apply), soonest first."
    )


class GroupBy(StrEnum):
    """What the report's rows are."""

    TEAM = "team"
    REP = "rep"
    OBLIGATION = "obligation"


class ResponseTimes(BaseModel):
    """Percentiles of response times (linear interpolation between the closest ranks); null without responses."""

    count: int
    p50: float | None
    p90: float | None
    p99: float | None


class ReportRow(BaseModel):
    """Obligations closed and responses recorded in the period, for one group (or all of them)."""

    met: int
    breached: int
    cancelled: int = Field(description="Closed unmet and unbreached: left the stage, or replaced by a reassignment.")
    compliance: float | None = Field(description="met / (met + breached); null when both are 0.")
    response_seconds: ResponseTimes = Field(description="Wall seconds to respond, late responses included.")
    response_business_seconds: ResponseTimes = Field(
        description="Business seconds to respond on the owning team's clock, late responses included."
    )


class ReportGroup(ReportRow):
    """One team's, rep's or obligation's row."""

    key: str | None = Field(description="The team id, rep id or obligation; null for obligations without a team.")


_ROW_EXAMPLE: dict[str, Any] = {
    "met": 40,
    "breached": 2,
    "cancelled": 3,
    "compliance": 0.9524,
    "response_seconds": {"count": 42, "p50": 310.0, "p90": 780.5, "p99": 1460.2},
    "response_business_seconds": {"count": 42, "p50": 300.0, "p90": 760.0, "p99": 1400.0},
}


class SlaReport(BaseModel):
    """Compliance and response times per group over `[from, to)`."""

    model_config = ConfigDict(
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {
                    "from": "2026-11-20T00:00:00Z",
                    "to": "2026-11-27T00:00:00Z",
                    "group_by": "team",
                    "team_id": None,
                    "groups": [{"key": "team-emea", **_ROW_EXAMPLE}],
                    "total": _ROW_EXAMPLE,
                }
            ]
        },
    )

    from_: datetime = Field(alias="from", description="The period's start (included).")
    to: datetime = Field(description="The period's end (excluded).")
    group_by: GroupBy
    team_id: str | None = Field(description="The team the report is limited to, if any.")
    groups: list[ReportGroup] = Field(description="One row per group with anything in the period, by key.")
    total: ReportRow
