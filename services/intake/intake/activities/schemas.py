"""Request and response shapes of the activities API."""

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from leadrelay.stages import REASONS, ActivityType, ContactChannel, LeadStage
from leadrelay.validation import storable

EXAMPLE_LEAD_ID = "7f3c8a52-1d47-4c36-9a55-0c1f2e6b9d10"
EXAMPLE_ACTIVITY_ID = "5e0d7c1a-8b3f-4f2e-a6d9-1c4b7e2f9a30"

ACTIVITY_EXAMPLE: dict[str, Any] = {
    "type": "rejected",
    "reason": "no_budget",
    "rep_id": "rep-ada",
    "occurred_at": "2026-11-23T12:02:12.310000Z",
}


class ActivityCreate(BaseModel):
    """Something that happened to a lead, as a CRM or marketing platform reports it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                ACTIVITY_EXAMPLE,
                {"type": "contacted", "channel": "call", "rep_id": "rep-ada"},
                {"type": "pricing_page_viewed"},
            ]
        },
    )

    type: ActivityType
    reason: str | None = Field(
        default=None,
        validate_default=True,
        max_length=50,
        description="Required for `rejected` and `lost`, from their lists in docs/lifecycle.md; refused otherwise.",
    )
    channel: ContactChannel | None = Field(
        default=None, validate_default=True, description="Required for `contacted`; refused otherwise."
    )
    rep_id: str | None = Field(
        default=None,
        validate_default=True,
        min_length=1,
        max_length=100,
        description="The rep who acted: required for rep activity, optional for marketing engagement.",
    )
    occurred_at: AwareDatetime | None = Field(
        default=None, description="When it happened, with a timezone; the time intake received it if left out."
    )
    external_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description=(
            "The sender's own id for this activity (the CRM's activity id): sent again for the same lead, it "
            "answers the activity first recorded (200) and records nothing."
        ),
        examples=["00T5g00000XyZaBEAZ"],
    )

    @field_validator("external_id")
    @classmethod
    def _storable_external_id(cls, value: str | None) -> str | None:
        storable(value)
        return value

    @field_validator("reason")
    @classmethod
    def _reason_from_its_list(cls, value: str | None, info: ValidationInfo) -> str | None:
        activity = info.data.get("type")
        if activity is None:
            return value  # the type itself failed, and is named
        reasons = REASONS.get(activity)
        if reasons is None:
            if value is not None:
                raise ValueError(f"only {' and '.join(sorted(REASONS))} take a reason")
            return None
        if value not in {reason.value for reason in reasons}:
            raise ValueError(
                f"{activity.value} needs a reason, one of: {', '.join(reason.value for reason in reasons)}"
            )
        return value

    @field_validator("channel")
    @classmethod
    def _channel_for_contact(cls, value: ContactChannel | None, info: ValidationInfo) -> ContactChannel | None:
        activity = info.data.get("type")
        if activity == ActivityType.CONTACTED and value is None:
            raise ValueError(
                f"contacted needs a channel, one of: {', '.join(channel.value for channel in ContactChannel)}"
            )
        if activity is not None and activity != ActivityType.CONTACTED and value is not None:
            raise ValueError("only contacted takes a channel")
        return value

    @field_validator("rep_id")
    @classmethod
    def _rep_for_rep_activity(cls, value: str | None, info: ValidationInfo) -> str | None:
        storable(value)
        activity = info.data.get("type")
        if value is None and activity is not None and not activity.is_engagement:
            raise ValueError(f"{activity.value} is a rep's activity: give the rep_id")
        return value


class ActivityPublic(BaseModel):
    """A recorded activity: its id is the id of the lead.activity event and of the lead's timeline entry."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": EXAMPLE_ACTIVITY_ID,
                    "lead_id": EXAMPLE_LEAD_ID,
                    **ACTIVITY_EXAMPLE,
                    "channel": None,
                    "previous_stage": "mql",
                    "stage": "rejected",
                    "recorded_at": "2026-11-23T12:02:12.315000Z",
                    "external_id": "00T5g00000XyZaBEAZ",
                }
            ]
        }
    )

    id: str
    lead_id: str
    type: ActivityType
    reason: str | None
    channel: ContactChannel | None
    rep_id: str | None
    occurred_at: datetime
    previous_stage: LeadStage
    stage: LeadStage
    recorded_at: datetime
    external_id: str | None = None
