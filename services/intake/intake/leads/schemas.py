"""Request and response shapes of the leads API."""

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlmodel._compat import SQLModelConfig

from intake.leads.models import LeadBase
from leadrelay.stages import LeadStage, SlaState

MAX_ATTRIBUTES_BYTES = 16_384

EXAMPLE_LEAD_ID = "7f3c8a52-1d47-4c36-9a55-0c1f2e6b9d10"

LEAD_EXAMPLE: dict[str, Any] = {
    "email": "ada@example.com",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "company": "Analytical Engines Ltd",
    "job_title": "Head of Engineering",
    "phone": "+44 20 7946 0000",
    "country": "GB",
    "source": "webinar",
    "campaign": "2026-q4-launch",
    "attributes": {"employees": 250},
}


class LeadCreate(LeadBase):
    """A new lead from a CRM or form."""

    model_config = SQLModelConfig(extra="forbid", json_schema_extra={"examples": [LEAD_EXAMPLE]})

    attributes: dict[str, Any] = Field(
        default_factory=dict,
        description=f"Free-form attributes kept with the lead (at most {MAX_ATTRIBUTES_BYTES} bytes as JSON).",
    )

    @field_validator("attributes")
    @classmethod
    def _bounded_attributes(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Bounded so that every event about the lead stays far below the broker's message size limit.
        if len(json.dumps(value, default=str)) > MAX_ATTRIBUTES_BYTES:
            raise ValueError(f"attributes must serialize to at most {MAX_ATTRIBUTES_BYTES} bytes of JSON")
        return value


class LeadAccepted(BaseModel):
    """Answer to an accepted lead: it is stored and its event is queued."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"id": EXAMPLE_LEAD_ID, "status": "accepted"}]})

    id: str
    status: str = "accepted"


class TimelineEntryPublic(BaseModel):
    """One event in a lead's history."""

    event_id: str
    type: str
    occurred_at: datetime
    details: dict[str, Any]


class LeadPublic(LeadBase):
    """A lead with its current stage, score, owner, SLA state and timeline."""

    model_config = SQLModelConfig(
        json_schema_extra={
            "examples": [
                {
                    **LEAD_EXAMPLE,
                    "id": EXAMPLE_LEAD_ID,
                    "stage": "mql",
                    "score": 100,
                    "icp_version": "placeholder-1",
                    "owner_rep_id": "rep-default",
                    "sla_due_at": "2026-11-23T12:05:00.310000Z",
                    "sla_state": "running",
                    "received_at": "2026-11-23T12:00:00.120000Z",
                    "updated_at": "2026-11-23T12:00:00.402000Z",
                    "timeline": [
                        {
                            "event_id": "0b6c2f0e-5a4b-4c1d-9e8f-3a2b1c0d9e8f",
                            "type": "lead.received",
                            "occurred_at": "2026-11-23T12:00:00.120250Z",
                            "details": {"source": "webinar", "campaign": "2026-q4-launch"},
                        },
                        {
                            "event_id": "96ff81e1-2698-4e32-8562-62fba1b54108",
                            "type": "lead.scored",
                            "occurred_at": "2026-11-23T12:00:00.201000Z",
                            "details": {
                                "score": 100,
                                "stage": "mql",
                                "icp_version": "placeholder-1",
                                "explanation": [
                                    {
                                        "criterion": "business_email",
                                        "points": 30,
                                        "reason": "email on a company domain",
                                    },
                                    {"criterion": "company_known", "points": 30, "reason": "company given"},
                                    {"criterion": "job_title_known", "points": 20, "reason": "job title given"},
                                    {"criterion": "reachable_by_phone", "points": 20, "reason": "phone given"},
                                ],
                            },
                        },
                        {
                            "event_id": "27b602dd-0f56-4a8b-9129-3676fe15e185",
                            "type": "lead.assigned",
                            "occurred_at": "2026-11-23T12:00:00.313000Z",
                            "details": {
                                "rep_id": "rep-default",
                                "rule_path": ["default"],
                                "candidates": ["rep-default"],
                            },
                        },
                        {
                            "event_id": "4c6f14eb-f9fb-4301-bcf5-a0e4de9dab61",
                            "type": "sla.started",
                            "occurred_at": "2026-11-23T12:00:00.368000Z",
                            "details": {
                                "obligation": "first_response",
                                "due_at": "2026-11-23T12:05:00.310000+00:00",
                                "rep_id": "rep-default",
                            },
                        },
                    ],
                }
            ]
        }
    )

    id: str
    attributes: dict[str, Any]
    stage: LeadStage
    score: int | None
    icp_version: str | None
    owner_rep_id: str | None
    sla_due_at: datetime | None
    sla_state: SlaState | None
    received_at: datetime
    updated_at: datetime
    timeline: list[TimelineEntryPublic] = Field(default_factory=list)
