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


class DeliveryPublic(BaseModel):
    """One notification of an assignment to one channel of its rep, and how it went."""

    id: str
    webhook_id: str = Field(description="The `webhook-id` header: the same on every attempt.")
    assignment_id: str
    rep_id: str
    channel_kind: str = Field(description="`webhook` or `slack`.")
    channel_index: int = Field(description="The channel's position in the rep's `channels` when the delivery was made.")
    status: str = Field(description="`pending`, `delivered`, `dead` or `disabled`.")
    attempts: int
    last_status_code: int | None = Field(description="The channel's last HTTP status; null after a timeout.")
    last_error: str | None
    next_attempt_at: datetime = Field(description="When a pending delivery is tried next.")
    created_at: datetime
    delivered_at: datetime | None


class LeadDeliveries(BaseModel):
    """Every notification of a lead's assignments, oldest first."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"lead_id": EXAMPLE_LEAD_ID, "deliveries": [_DELIVERY_EXAMPLE]}]}
    )

    lead_id: str
    deliveries: list[DeliveryPublic]
