"""Stored deliveries: one row per assignment and rep channel."""

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import uuid4

from sqlalchemy import JSON, Column, Index
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
    SKIPPED = "skipped"
    """Nothing to send: an SLA escalation found no recipient or no enabled channel (`last_error` says which)."""


class DeliveryKind(StrEnum):
    """What a delivery tells its recipient."""

    ASSIGNMENT = "assignment"
    """A lead was assigned to the rep (payload type `lead.assigned`)."""
    WARNING = "warning"
    """One of the rep's obligations is close to its deadline (sla.warning; payload type `sla.warning`)."""
    REMINDER = "reminder"
    """The rep breached an obligation whose escalation says remind (payload type `sla.reminder`)."""
    ESCALATION = "escalation"
    """To the team's manager: a rep breached an obligation whose escalation says notify_manager."""


class ChannelKind(StrEnum):
    """A rep's notification channel kind."""

    WEBHOOK = "webhook"
    SLACK = "slack"


class Delivery(SQLModel, table=True):
    """One notification about an assignment to one channel of its recipient (its rep; for an escalation the manager).

    `webhook_id` is stable per assignment, kind, obligation and channel, so a receiver can drop a
    repeat, and an event redelivered makes no second row.
    """

    __tablename__ = "delivery"
    # The delivery job's claim: the earliest due pending rows, read in index order.
    __table_args__ = (Index("ix_delivery_status_next_attempt_at", "status", "next_attempt_at"),)

    id: str = Field(default_factory=lambda: str(uuid4()), primary_key=True, max_length=36)
    webhook_id: str = Field(max_length=100, unique=True)
    assignment_id: str = Field(max_length=36, index=True)
    lead_id: str = Field(max_length=36, index=True)
    rep_id: str = Field(max_length=100)
    """The recipient: the assignment's rep, or the team's manager for an escalation ("" when there is none)."""
    kind: str = Field(default=DeliveryKind.ASSIGNMENT, max_length=20, sa_column_kwargs={"server_default": "assignment"})
    obligation: str | None = Field(default=None, max_length=100)
    """The SLA obligation a warning, reminder or escalation is about; None for an assignment's notification."""
    channel_index: int
    """The channel's position in the rep's `channels` when the delivery was made (-1: skipped, no channel)."""
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
