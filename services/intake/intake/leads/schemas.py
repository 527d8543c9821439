"""Request and response shapes of the leads API."""

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlmodel._compat import SQLModelConfig

from intake.leads.models import LeadBase
from leadrelay.stages import LeadStage

MAX_ATTRIBUTES_BYTES = 16_384

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

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"id": "7f3c8a52-1d47-4c36-9a55-0c1f2e6b9d10", "status": "accepted"}]}
    )

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
                    "id": "7f3c8a52-1d47-4c36-9a55-0c1f2e6b9d10",
                    "stage": "mql",
                    "score": 80,
                    "icp_version": "placeholder-0",
                    "owner_rep_id": "rep-default",
                    "sla_due_at": "2026-11-23T12:05:00Z",
                    "sla_state": "running",
                    "received_at": "2026-11-23T12:00:00Z",
                    "updated_at": "2026-11-23T12:00:01Z",
                    "timeline": [
                        {
                            "event_id": "0b6c…",
                            "type": "lead.received",
                            "occurred_at": "2026-11-23T12:00:00Z",
                            "details": {"source": "webinar"},
                        },
                        {
                            "event_id": "4d1e…",
                            "type": "lead.scored",
                            "occurred_at": "2026-11-23T12:00:00Z",
                            "details": {"score": 80, "stage": "mql"},
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
    sla_state: str | None
    received_at: datetime
    updated_at: datetime
    timeline: list[TimelineEntryPublic] = Field(default_factory=list)
