"""What the delivery log answers: never a URL or a secret."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from router.assignments.schemas import EXAMPLE_LEAD_ID

_DELIVERY_EXAMPLE: dict[str, Any] = {
    "id": "2d1c4b8e-6f0a-4c3e-9b7d-0a1e2f3c4d5e",
    "webhook_id": "msg_0b7c3e9a-1d0f-4a55-8f57-6c0c1c8a9b10_0",
    "assignment_id": "0b7c3e9a-1d0f-4a55-8f57-6c0c1c8a9b10",
    "rep_id": "rep-ada",
    "kind": "assignment",
    "obligation": None,
    "channel_kind": "webhook",
    "channel_index": 0,
    "status": "delivered",
    "attempts": 2,
    "last_status_code": 200,
    "last_error": None,
    "next_attempt_at": "2026-11-27T09:30:01.120Z",
    "created_at": "2026-11-27T09:30:00.412Z",
    "delivered_at": "2026-11-27T09:30:01.350Z",
}

_REMINDER_EXAMPLE: dict[str, Any] = {
    **_DELIVERY_EXAMPLE,
    "id": "7a4f0c2e-3b1d-4e8f-a6c5-9d2b1e0f3a47",
    "webhook_id": "msg_0b7c3e9a-1d0f-4a55-8f57-6c0c1c8a9b10_reminder_accept_0",
    "kind": "reminder",
    "obligation": "accept",
    "attempts": 1,
    "next_attempt_at": "2026-11-27T09:45:00.402Z",
    "created_at": "2026-11-27T09:45:00.402Z",
    "delivered_at": "2026-11-27T09:45:00.611Z",
}
_SKIPPED_EXAMPLE: dict[str, Any] = {
    **_REMINDER_EXAMPLE,
    "id": "c3e1b7d9-0f2a-4b6c-8e5d-1a9f7b3c2d60",
    "webhook_id": "msg_0b7c3e9a-1d0f-4a55-8f57-6c0c1c8a9b10_escalation_accept_none",
    "rep_id": "",
    "kind": "escalation",
    "channel_kind": "none",
    "channel_index": -1,
    "status": "skipped",
    "attempts": 0,
    "last_status_code": None,
    "last_error": "team emea has no manager",
    "delivered_at": None,
}


class DeliveryPublic(BaseModel):
    """One notification of an assignment to one channel of its rep, and how it went."""

    id: str
    webhook_id: str = Field(description="The `webhook-id` header: the same on every attempt.")
    assignment_id: str
    rep_id: str = Field(description="The recipient: the assignment's rep, or for an escalation the team's manager.")
    kind: str = Field(
        description="`assignment` (the lead was given to the rep), `warning` (an obligation is close to its deadline), "
        "`reminder` (the rep breached it) or `escalation` (to the team's manager, about the breach)."
    )
    obligation: str | None = Field(description="The SLA obligation a warning, reminder or escalation is about.")
    channel_kind: str = Field(description="`webhook`, `slack`, or `none` for a skipped delivery.")
    channel_index: int = Field(
        description="The channel's position in the recipient's `channels` when the delivery was made; -1 when skipped."
    )
    status: str = Field(
        description="`pending`, `delivered`, `dead`, `disabled`, or `skipped` (nothing to send: no manager, or no "
        "enabled channel; `last_error` says which)."
    )
    attempts: int
    last_status_code: int | None = Field(description="The channel's last HTTP status; null after a timeout.")
    last_error: str | None
    next_attempt_at: datetime = Field(description="When a pending delivery is tried next.")
    created_at: datetime
    delivered_at: datetime | None


class LeadDeliveries(BaseModel):
    """Every notification of a lead's assignments, oldest first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"lead_id": EXAMPLE_LEAD_ID, "deliveries": [_DELIVERY_EXAMPLE, _REMINDER_EXAMPLE, _SKIPPED_EXAMPLE]}
            ]
        }
    )

    lead_id: str
    deliveries: list[DeliveryPublic]
