"""Stored timers."""

from datetime import datetime
from uuid import uuid4

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from leadrelay.events import utcnow
from leadrelay.stages import SlaState

REPLACED = "replaced"
"""The status of a timer closed unbreached because a reassignment replaced its assignment (no SlaState: never
published; the new assignment's timer carries the obligation on)."""


class SlaTimer(SQLModel, table=True):
    """An obligation with its deadline; indexed so due timers are found without a scan."""

    __tablename__ = "sla_timer"
    __table_args__ = (
        UniqueConstraint("assignment_id", "obligation"),
        Index("ix_sla_timer_status_due_at", "status", "due_at"),
    )

    id: str = Field(default_factory=lambda: str(uuid4()), primary_key=True, max_length=36)
    lead_id: str = Field(max_length=36, index=True)
    assignment_id: str = Field(max_length=36)
    obligation: str = Field(max_length=50)
    rep_id: str = Field(max_length=100)
    policy_version: str = Field(max_length=50)
    started_at: datetime = Field(default_factory=utcnow)
    due_at: datetime
    status: str = Field(default=SlaState.RUNNING, max_length=20)  # a SlaState or REPLACED, stored as VARCHAR
    closed_at: datetime | None = None
