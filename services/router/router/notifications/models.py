"""Stored deliveries: one row per assignment and rep channel."""

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import uuid4

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from leadrelay.events import utcnow


class DeliveryStatus(StrEnum):
    """Where a delivery stands."""

    PENDING = "pending"
    """Waiting for its next attempt (`next_attempt_at`)."""
    DELIVERED = "delivered"
    """The channel answered 2xx: never sent again."""
    DEAD = "dead"
    """Given up after the retry horizon, or refused for good (4xx other than 408, 409, 425, 429)."""
    DISABLED = "disabled"
    """The channel answered 410 Gone (the channel is disabled too), or was removed from the rep."""


class ChannelKind(StrEnum):
    """A rep's notification channel kind."""

    WEBHOOK = "webhook"
    SLACK = "slack"


class Delivery(SQLModel, table=True):
    """One notification of one assignment to one channel of its rep.

    `webhook_id` is stable per assignment and channel, so a receiver can drop a repeat.
    """

    __tablename__ = "delivery"
    __table_args__ = (UniqueConstraint("assignment_id", "channel_index", name="uq_delivery_assignment_channel"),)

    id: str = Field(default_factory=lambda: str(uuid4()), primary_key=True, max_length=36)
    webhook_id: str = Field(max_length=100, unique=True)
    assignment_id: str = Field(max_length=36, index=True)
    lead_id: str = Field(max_length=36, index=True)
    rep_id: str = Field(max_length=100)
    channel_index: int
    """The channel's position in the rep's `channels` when the delivery was made."""
    channel_kind: str = Field(max_length=20)
    status: str = Field(default=DeliveryStatus.PENDING, max_length=20, index=True)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, index=True)
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    """The notification body (the Slack message is rendered from it when sent)."""
    received_at: datetime | None = None
    """When intake accepted the lead: speed-to-lead ends when this delivery succeeds."""
    created_at: datetime = Field(default_factory=utcnow)
    delivered_at: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow)


class SlaDeadline(SQLModel, table=True):
    """A deadline the sla-monitor started for an assignment (sla.started): notifications tell the rep."""

    __tablename__ = "sla_deadline"

    assignment_id: str = Field(primary_key=True, max_length=36)
    obligation: str = Field(primary_key=True, max_length=100)
    lead_id: str = Field(max_length=36, index=True)
    due_at: datetime
    started_at: datetime
    created_at: datetime = Field(default_factory=utcnow)
