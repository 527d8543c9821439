"""Stored routing decisions: a lead's assignments in order, the scored lead they were made from, reps' loads."""

from datetime import date, datetime
from enum import StrEnum
from typing import Any
from uuid import uuid4

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from leadrelay.events import AssignmentTrigger, utcnow


class Outcome(StrEnum):
    """Where a routing decision sent the lead."""

    ASSIGNED = "assigned"
    """To a rep."""
    QUEUED = "queued"
    """To a team's queue, for a rep of the team to pick up by hand."""
    NURTURED = "nurtured"
    """Back to marketing."""


class Assignment(SQLModel, table=True):
    """One routing decision about a lead; the lead's current one is its highest `sequence`.

    The unique (lead id, sequence) makes concurrent replicas agree: of two making the same
    decision, the second insert fails and its transaction's credits roll back with it.
    """

    __table_args__ = (UniqueConstraint("lead_id", "sequence", name="uq_assignment_lead_sequence"),)

    id: str = Field(default_factory=lambda: str(uuid4()), primary_key=True, max_length=36)
    lead_id: str = Field(max_length=36, index=True)
    sequence: int = 1
    outcome: str = Field(default=Outcome.ASSIGNED, max_length=20)
    rep_id: str | None = Field(default=None, max_length=100, index=True)
    team_id: str | None = Field(default=None, max_length=100)
    rule_path: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    candidates: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    routing_version: str = Field(max_length=50)
    trigger: str = Field(default=AssignmentTrigger.ROUTED, max_length=20)
    reason: str | None = Field(default=None, max_length=500)
    previous_assignment_id: str | None = Field(default=None, max_length=36)
    explanation: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    """The whole decision: rules evaluated, actions tried, every candidate and why (see `routing.Routing.as_dict`)."""
    assigned_at: datetime = Field(default_factory=utcnow)


class RoutedLead(SQLModel, table=True):
    """The last lead.scored seen for a lead: what reassignment, notifications and replay route from."""

    __tablename__ = "routed_lead"

    lead_id: str = Field(primary_key=True, max_length=36)
    scored: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    """The lead.scored payload, as JSON."""
    received_at: datetime | None = None
    scored_at: datetime = Field(index=True)
    updated_at: datetime = Field(default_factory=utcnow)


class RepLoad(SQLModel, table=True):
    """Leads given to a rep per day (the rep's first team's calendar day): caps and least-loaded read it."""

    __tablename__ = "rep_load"

    rep_id: str = Field(primary_key=True, max_length=100)
    day: date = Field(primary_key=True)
    assigned: int = 0
