"""Stored timers: one per obligation of an assignment."""

from datetime import datetime
from uuid import uuid4

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from leadrelay.events import SlaClock, utcnow
from leadrelay.stages import SlaState

REPLACED = "replaced"
"""The status of a timer closed unbreached because a reassignment replaced its assignment and the policy restarts
the obligation (published as sla.cancelled with reason `reassigned`; the new assignment's timer carries it on)."""
OPEN_STATES = (SlaState.RUNNING, SlaState.WARNING)


class SlaTimer(SQLModel, table=True):
    """An obligation of one assignment: its window, its deadline and where it stands.

    `next_at` is the next instant the monitor must act on (the warning, then the deadline) and is null
    once the timer is closed, so the monitor finds what is due, and when to wake, from one index.
    """

    __tablename__ = "sla_timer"
    __table_args__ = (
        UniqueConstraint("assignment_id", "obligation"),
        Index("ix_sla_timer_next_at", "next_at"),
        Index("ix_sla_timer_status_due_at", "status", "due_at"),
        Index("ix_sla_timer_closed_at", "closed_at"),
    )

    id: str = Field(default_factory=lambda: str(uuid4()), primary_key=True, max_length=36)
    lead_id: str = Field(max_length=36, index=True)
    assignment_id: str = Field(max_length=36)
    sequence: int = 1
    """The assignment's sequence (1, then one more per reassignment)."""
    obligation: str = Field(max_length=50)
    rep_id: str = Field(max_length=100)
    team_id: str | None = Field(default=None, max_length=100)
    grade: str | None = Field(default=None, max_length=10)
    source: str | None = Field(default=None, max_length=100)
    policy_version: str = Field(max_length=50)
    clock: str = Field(default=SlaClock.WALL, max_length=10)  # a SlaClock, stored as VARCHAR
    within_seconds: float
    """The window in seconds of the clock."""
    met_by: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    stages: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    escalation: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    started_at: datetime = Field(default_factory=utcnow)
    warn_at: datetime | None = None
    due_at: datetime
    next_at: datetime | None = None
    status: str = Field(default=SlaState.RUNNING, max_length=20)  # a SlaState or REPLACED, stored as VARCHAR
    warned_at: datetime | None = None
    closed_at: datetime | None = None
    """When it was met, breached, cancelled or replaced."""
    close_reason: str | None = Field(default=None, max_length=50)
    responded_at: datetime | None = None
    """The first activity that meets the obligation, even after a breach (response times in the report)."""
    response_seconds: float | None = None
    response_business_seconds: float | None = None
