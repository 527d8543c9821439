"""Request and response shapes of the leads API."""

import base64
import binascii
import json
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from annotated_types import MaxLen
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, WithJsonSchema, field_validator
from sqlmodel import SQLModel
from sqlmodel._compat import SQLModelConfig

from intake.leads import normalise
from intake.leads.models import LeadBase, RoutingOutcome
from leadrelay.problems import VALIDATION_PROBLEM, Problem
from leadrelay.stages import LeadStage, SlaState
from leadrelay.validation import storable

MAX_ATTRIBUTES_BYTES = 16_384
EMAIL_MAX_LENGTH = 320
SOURCE_MAX_LENGTH = 100
TEXT_FIELDS = (
    "first_name",
    "last_name",
    "company",
    "job_title",
    "industry",
    "website",
    "campaign",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "crm_id",
)

EXAMPLE_LEAD_ID = "7f3c8a52-1d47-4c36-9a55-0c1f2e6b9d10"

LEAD_EXAMPLE: dict[str, Any] = {
    "email": "Ada@Example.com",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "company": "Analytical Engines Ltd",
    "job_title": "Head of Engineering",
    "country": "United Kingdom",
    "phone": "020 7946 0000",
    "industry": "Software",
    "employees": 250,
    "annual_revenue": 40000000,
    "website": "https://analytical-engines.example",
    "source": "webinar",
    "campaign": "2026-q4-launch",
    "utm_source": "newsletter",
    "utm_medium": "email",
    "utm_campaign": "q4-launch",
    "crm_id": "00Q5g00000AbCdE",
    "marketing_opt_in": True,
    "attributes": {"webinar_question": "Does it route by territory?"},
}
"""A lead as a CRM sends it."""

STORED_LEAD_EXAMPLE: dict[str, Any] = {
    **LEAD_EXAMPLE,
    "email": "ada@example.com",
    "country": "GB",
    "phone": "+442079460000",
    "email_domain": "example.com",
    "email_free_mail": False,
    "email_disposable": False,
    "email_lookalike": False,
}
"""The same lead as intake stores it, normalised."""


def _max_length(model: type[SQLModel], field_name: str | None) -> int | None:
    if field_name is None:
        return None
    for constraint in model.model_fields[field_name].metadata:
        if isinstance(constraint, MaxLen):
            return int(constraint.max_length)
    return None


class LeadCreate(LeadBase):
    """A new lead from a CRM or form."""

    model_config = SQLModelConfig(extra="forbid", json_schema_extra={"examples": [LEAD_EXAMPLE]})

    # Redeclared so a country name gets through to normalisation (stored as two letters).
    country: str | None = Field(
        default=None,
        max_length=100,
        description="An ISO 3166-1 code (alpha-2, alpha-3 or numeric) or an English name; stored as alpha-2.",
    )
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

    @field_validator("*")
    @classmethod
    def _storable(cls, value: object) -> object:
        return storable(value)

    @field_validator("email")
    @classmethod
    def _normalise_email(cls, value: str) -> str:
        address = normalise.email(value)
        if len(address) > EMAIL_MAX_LENGTH:
            raise ValueError(f"must be at most {EMAIL_MAX_LENGTH} characters once normalised")
        return address

    @field_validator(*TEXT_FIELDS)
    @classmethod
    def _normalise_text(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        cleaned = normalise.text(value)
        # Checked again after normalising: NFKC can lengthen text ("\ufdfa" becomes 18 characters).
        limit = _max_length(cls, info.field_name)
        if limit is not None and len(cleaned) > limit:
            raise ValueError(f"must be at most {limit} characters once normalised")
        return cleaned or None

    @field_validator("source")
    @classmethod
    def _normalise_source(cls, value: str) -> str:
        cleaned = normalise.text(value)
        if not cleaned or len(cleaned) > SOURCE_MAX_LENGTH:
            raise ValueError(f"must be 1 to {SOURCE_MAX_LENGTH} characters once normalised")
        return cleaned

    @field_validator("country")
    @classmethod
    def _normalise_country(cls, value: str | None) -> str | None:
        if value is None or not normalise.text(value):
            return None
        return normalise.country(value)

    @field_validator("phone")
    @classmethod
    def _normalise_phone(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or not normalise.text(value):
            return None
        return normalise.phone(value, country_code=info.data.get("country"))


class AcceptStatus(StrEnum):
    """What intake did with a submitted lead."""

    ACCEPTED = "accepted"
    """A new lead: stored, lead.received queued, it will be scored and routed."""
    REENGAGED = "reengaged"
    """A known person (same email or crm_id): the existing lead got a timeline entry and its empty fields filled."""


class LeadAccepted(BaseModel):
    """Answer to an accepted lead: it is stored and its event is queued (or a known person re-engaged)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"id": EXAMPLE_LEAD_ID, "status": "accepted"},
                {"id": EXAMPLE_LEAD_ID, "status": "reengaged"},
            ]
        }
    )

    id: str
    status: AcceptStatus = AcceptStatus.ACCEPTED


class TimelineEntryPublic(BaseModel):
    """One event in a lead's history."""

    event_id: str
    type: str
    occurred_at: datetime
    details: dict[str, Any]


READ_LEAD_EXAMPLE: dict[str, Any] = {
    **STORED_LEAD_EXAMPLE,
    "id": EXAMPLE_LEAD_ID,
    "stage": "mql",
    "score": 78,
    "icp_version": "3",
    "grade": "A2",
    "fit": 62,
    "engagement": 16,
    "mql": True,
    "account_id": "acc-analytical-engines",
    "owner_rep_id": "rep-ada",
    "routing_outcome": "assigned",
    "queue_team_id": None,
    "assignment_sequence": 1,
    "sla_due_at": "2026-11-23T12:05:00.310000Z",
    "sla_state": "warning",
    "sla_obligations": {
        "accept": {
            "state": "warning",
            "due_at": "2026-11-23T12:05:00.310000Z",
            "assignment_id": "0b7c3e9a-1d0f-4a55-8f57-6c0c1c8a9b10",
            "rep_id": "rep-ada",
            "started_at": "2026-11-23T12:00:00.310000Z",
            "changed_at": "2026-11-23T12:04:00.310000Z",
        },
        "first_touch": {
            "state": "met",
            "due_at": "2026-11-23T12:30:00.310000Z",
            "assignment_id": "0b7c3e9a-1d0f-4a55-8f57-6c0c1c8a9b10",
            "rep_id": "rep-ada",
            "started_at": "2026-11-23T12:00:00.310000Z",
            "changed_at": "2026-11-23T12:03:12.052000Z",
        },
    },
    "received_at": "2026-11-23T12:00:00.120000Z",
    "updated_at": "2026-11-23T12:04:00.331000Z",
    "reengaged_at": None,
    "reengagement_count": 0,
    "merged_into_id": None,
}


SCORED_DETAILS_EXAMPLE: dict[str, Any] = {
    "score": 78,
    "stage": "mql",
    "icp_version": "3",
    "grade": "A2",
    "fit": 62,
    "engagement": 16,
    "mql": True,
    "mql_reason": "fit A >= B and engagement 2 >= 2",
    "became_mql": True,
    "disqualified": None,
    "trigger": "received",
    "account": {
        "account_id": "acc-analytical-engines",
        "method": "domain",
        "confidence": 1.0,
        "owner_rep_id": "rep-ada",
    },
    "enriched_fields": ["industry", "employees"],
    "explanation": [
        {"criterion": "target_industry", "points": 30, "reason": "industry Software is a target", "kind": "fit"},
        {"criterion": "seniority", "points": 32, "reason": "job title says head of", "kind": "fit"},
        {"criterion": "webinar_attended", "points": 16, "reason": "1 webinar, 2 days ago", "kind": "engagement"},
    ],
    "explanation_omitted": 0,
}
"""Timeline details of a lead.scored: the decision, the matched account and the criteria that weighed most."""


ASSIGNED_DETAILS_EXAMPLE: dict[str, Any] = {
    "outcome": "assigned",
    "assignment_id": "b9dbcccf-014a-4d22-9b11-4714844a10a5",
    "rule": "emea",
    "rule_path": ["enterprise_accounts", "emea"],
    "routing_version": "3",
    "reason": None,
    "grade": "A2",
    "source": "webinar",
    "explanation": {
        "version": "3",
        "rule": "emea",
        "evaluated": [{"rule": "enterprise_accounts", "matched": False}, {"rule": "emea", "matched": True}],
        "outcome": "assigned",
        "rep_id": "rep-ada",
        "team_id": "team-emea",
        "steps": [{"step": 0, "outcome": "chosen", "rep_id": "rep-ada", "skipped": []}],
    },
    "sequence": 1,
    "trigger": "routed",
    "rep_id": "rep-ada",
    "team_id": "team-emea",
    "previous_assignment_id": None,
    "previous_rep_id": None,
    "mql": True,
    "candidates": ["rep-bob", "rep-ada"],
    "candidates_omitted": 0,
}
"""Timeline details of a lead.assigned: the outcome, the rule and version, the trigger, and the router's explanation."""


class SlaObligationState(BaseModel):
    """Where one SLA obligation of the lead stands, as its latest sla.* event says."""

    state: SlaState
    due_at: datetime
    assignment_id: str = Field(description="The assignment the obligation runs for (it restarts on reassignment).")
    rep_id: str
    started_at: datetime | None = Field(default=None, description="When its timer started, where known.")
    changed_at: datetime = Field(description="When it reached `state` (as the sla-monitor says).")


class LeadRead(LeadBase):
    """A lead with its current stage, score, owner and SLA state."""

    model_config = SQLModelConfig(json_schema_extra={"examples": [READ_LEAD_EXAMPLE]})

    id: str
    attributes: dict[str, Any]
    email_domain: str | None
    email_free_mail: bool
    email_disposable: bool
    email_lookalike: bool
    stage: LeadStage
    score: int | None
    icp_version: str | None = Field(description="The ICP version of the latest score.")
    grade: str | None = Field(
        default=None, description="Fit band A-D and engagement band 1-4 of the latest score.", examples=["A2"]
    )
    fit: int | None = Field(default=None, description="Fit points of the latest score.")
    engagement: int | None = Field(default=None, description="Engagement points of the latest score.")
    mql: bool = Field(default=False, description="Whether scoring decided the lead is a marketing-qualified lead.")
    account_id: str | None = Field(default=None, description="The account scoring matched the lead to.")
    owner_rep_id: str | None = Field(description="The rep the latest routing decision assigned the lead to.")
    routing_outcome: RoutingOutcome | None = Field(
        default=None, description="Where the latest routing decision sent the lead; null until routed."
    )
    queue_team_id: str | None = Field(
        default=None, description="The team whose queue the lead waits in (outcome `queued`), else null."
    )
    assignment_sequence: int = Field(
        default=0, description="0 until routed, 1 for the first routing decision, one more per reassignment."
    )
    sla_due_at: datetime | None = Field(
        description="The deadline of the obligation `sla_state` is about; null until the first SLA timer starts."
    )
    sla_state: SlaState | None = Field(
        description="The lead's most urgent open obligation: `breached`, else `warning`, else `running` (the soonest "
        "deadline first); `met` or `cancelled` (the latest) only when none is open; null until a timer starts."
    )
    sla_obligations: dict[str, SlaObligationState] = Field(
        default_factory=dict, description="Each SLA obligation of the lead (accept, first_touch...) by name."
    )
    received_at: datetime
    updated_at: datetime
    reengaged_at: datetime | None
    reengagement_count: int
    merged_into_id: str | None = Field(
        default=None, description="Set on a duplicate from before one lead per person: the person's lead."
    )


class LeadPublic(LeadRead):
    """A lead with its current stage, score, owner, SLA state and timeline."""

    model_config = SQLModelConfig(
        json_schema_extra={
            "examples": [
                {
                    **READ_LEAD_EXAMPLE,
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
                            "details": SCORED_DETAILS_EXAMPLE,
                        },
                        {
                            "event_id": "27b602dd-0f56-4a8b-9129-3676fe15e185",
                            "type": "lead.assigned",
                            "occurred_at": "2026-11-23T12:00:00.313000Z",
                            "details": ASSIGNED_DETAILS_EXAMPLE,
                        },
                        {
                            "event_id": "4c6f14eb-f9fb-4301-bcf5-a0e4de9dab61",
                            "type": "sla.started",
                            "occurred_at": "2026-11-23T12:00:00.368000Z",
                            "details": {
                                "obligation": "accept",
                                "state": "running",
                                "due_at": "2026-11-23T12:05:00.310000+00:00",
                                "assignment_id": "0b7c3e9a-1d0f-4a55-8f57-6c0c1c8a9b10",
                                "rep_id": "rep-ada",
                                "current": True,
                            },
                        },
                        {
                            "event_id": "d2a7c9e1-4b3f-4e6a-8c1d-5f0e9b2a7c34",
                            "type": "sla.met",
                            "occurred_at": "2026-11-23T12:03:12.060000Z",
                            "details": {
                                "obligation": "first_touch",
                                "state": "met",
                                "due_at": "2026-11-23T12:30:00.310000+00:00",
                                "assignment_id": "0b7c3e9a-1d0f-4a55-8f57-6c0c1c8a9b10",
                                "rep_id": "rep-ada",
                                "current": True,
                                "activity": "contacted",
                            },
                        },
                        {
                            "event_id": "8f3e1a2b-6c7d-4e9f-a0b1-c2d3e4f5a6b7",
                            "type": "sla.warning",
                            "occurred_at": "2026-11-23T12:04:00.320000Z",
                            "details": {
                                "obligation": "accept",
                                "state": "warning",
                                "due_at": "2026-11-23T12:05:00.310000+00:00",
                                "assignment_id": "0b7c3e9a-1d0f-4a55-8f57-6c0c1c8a9b10",
                                "rep_id": "rep-ada",
                                "current": True,
                                "remaining_seconds": 60.0,
                            },
                        },
                    ],
                }
            ]
        }
    )

    timeline: list[TimelineEntryPublic] = Field(default_factory=list)


MAX_BATCH_ITEMS = 1_000


class LeadBatch(BaseModel):
    """Up to 1,000 leads; each is checked on its own, so one bad item does not fail the others."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"leads": [LEAD_EXAMPLE, {"email": "grace@example.org", "source": "crm-sync"}]}]
        },
    )

    leads: Annotated[
        list[Any],
        Field(min_length=1, max_length=MAX_BATCH_ITEMS),
        WithJsonSchema(
            {
                "type": "array",
                "items": {"$ref": "#/components/schemas/LeadCreate"},
                "minItems": 1,
                "maxItems": MAX_BATCH_ITEMS,
            }
        ),
    ]


class BatchItemStatus(StrEnum):
    """What happened to one item of a batch."""

    ACCEPTED = "accepted"
    REENGAGED = "reengaged"
    REJECTED = "rejected"


class BatchItemResult(BaseModel):
    """One item's result: its lead id and status, or the problem that kept it out."""

    index: int
    status: BatchItemStatus
    id: str | None = None
    problem: Problem | None = None


class LeadBatchResults(BaseModel):
    """One result per submitted item, in order."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "results": [
                        {"index": 0, "status": "accepted", "id": EXAMPLE_LEAD_ID, "problem": None},
                        {
                            "index": 1,
                            "status": "reengaged",
                            "id": "0d6f2b1c-3e4a-4b5c-8d9e-1f2a3b4c5d6e",
                            "problem": None,
                        },
                        {
                            "index": 2,
                            "status": "rejected",
                            "id": None,
                            "problem": {
                                "type": VALIDATION_PROBLEM,
                                "title": "Invalid lead",
                                "status": 422,
                                "detail": "leads.2.email: value is not a valid email address",
                                "errors": [
                                    {
                                        "field": "leads.2.email",
                                        "pointer": "/leads/2/email",
                                        "message": "value is not a valid email address",
                                    }
                                ],
                            },
                        },
                    ]
                }
            ]
        }
    )

    results: list[BatchItemResult]


class LeadPage(BaseModel):
    """One page of leads, oldest received first; `next_cursor` fetches the next page, null on the last."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"leads": [READ_LEAD_EXAMPLE], "next_cursor": "eyJyIjoiMjAyNi0xMS0yM1Qx"}]}
    )

    leads: list[LeadRead]
    next_cursor: str | None


class LeadTimeline(BaseModel):
    """A lead's events, oldest first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "lead_id": EXAMPLE_LEAD_ID,
                    "timeline": [
                        {
                            "event_id": "0b6c2f0e-5a4b-4c1d-9e8f-3a2b1c0d9e8f",
                            "type": "lead.received",
                            "occurred_at": "2026-11-23T12:00:00.120250Z",
                            "details": {"source": "webinar", "campaign": "2026-q4-launch"},
                        },
                        {
                            "event_id": "5e1d9c3a-7b2f-4e6d-a8c0-9f1e2d3c4b5a",
                            "type": "lead.reengaged",
                            "occurred_at": "2026-11-30T09:14:02.500000Z",
                            "details": {
                                "source": "pricing-page",
                                "campaign": None,
                                "utm_campaign": "retargeting",
                                "filled": ["job_title"],
                            },
                        },
                    ],
                }
            ]
        }
    )

    lead_id: str
    timeline: list[TimelineEntryPublic]


def encode_cursor(*, received_at: datetime, lead_id: str) -> str:
    """An opaque cursor: the position of the last lead of a page in (received_at, id) order."""
    raw = json.dumps({"r": received_at.isoformat(), "i": lead_id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The position a cursor names; ValueError if it is not one intake gave out."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        received_at = datetime.fromisoformat(raw["r"])
        lead_id = str(raw["i"])
    except (ValueError, TypeError, KeyError, binascii.Error):
        raise ValueError("is not a cursor this API gave out") from None
    if received_at.tzinfo is None:
        raise ValueError("is not a cursor this API gave out")
    return received_at, lead_id
