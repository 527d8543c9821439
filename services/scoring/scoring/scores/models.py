"""Stored scores: the latest evaluation of each lead, what it was evaluated on, and the person's engagements."""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import JSON, BigInteger, Column, Integer
from sqlmodel import Field, SQLModel

from leadrelay.events import utcnow
from leadrelay.stages import LeadStage, stage_column

_ID = BigInteger().with_variant(Integer(), "sqlite")


class LeadScore(SQLModel, table=True):
    """The latest score of a lead, how it was reached, and the facts it was reached on.

    `facts` (the lead's fields after account enrichment, see `scoring.icp.engine`) and the lead's
    engagements are all an ICP needs, so a new engagement, a new ICP version and the impact preview
    evaluate again without the lead being sent again.
    """

    __tablename__ = "lead_score"

    lead_id: str = Field(primary_key=True, max_length=36)
    score: int
    stage: LeadStage = Field(sa_column=stage_column())
    icp_version: str = Field(max_length=50)
    explanation: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    scored_at: datetime = Field(default_factory=utcnow)
    fit: int = 0
    engagement: int = 0
    grade: str | None = Field(default=None, max_length=2)
    mql: bool = False
    mql_at: datetime | None = None
    """When the lead first crossed the MQL line; set once, never cleared."""
    mql_reason: str | None = Field(default=None, max_length=500)
    disqualified: str | None = Field(default=None, max_length=500)
    source: str = Field(default="other", max_length=100)
    received_at: datetime = Field(default_factory=utcnow, index=True)
    facts: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    lead: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    """The lead.received payload, carried on in every lead.scored."""
    account_id: str | None = Field(default=None, max_length=100, index=True)
    match_method: str | None = Field(default=None, max_length=20)
    match_confidence: float | None = None
    enriched_fields: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class LeadEngagement(SQLModel, table=True):
    """One engagement of a lead's person, as the ICP's engagement criteria weigh it."""

    __tablename__ = "lead_engagement"
    __table_args__ = (sa.Index("ix_lead_engagement_lead_id_occurred_at", "lead_id", "occurred_at"),)

    event_id: str = Field(primary_key=True, max_length=64)
    """The lead.activity event's id: a redelivered event is stored once."""
    lead_id: str = Field(max_length=36)
    activity: str = Field(max_length=30)
    """An `ActivityType` value."""
    occurred_at: datetime


class RescoreRun(SQLModel, table=True):
    """A re-scoring of open leads after an ICP version became active; its cursor makes it resumable.

    Recorded in the transaction that handles agreement.activated; one run per version. A newer
    activation supersedes an unfinished run (`finished_at` set, `superseded` true).
    """

    __tablename__ = "rescore_run"

    id: int | None = Field(default=None, sa_column=Column(_ID, primary_key=True, autoincrement=True))
    icp_version: int = Field(sa_column=Column(sa.Integer, nullable=False, unique=True))
    started_at: datetime = Field(default_factory=utcnow)
    received_since: datetime
    """Leads received before this are left as they are (RESCORE_DAYS before the activation)."""
    cursor: str | None = Field(default=None, max_length=36)
    """The last lead id re-scored (keyset order)."""
    total: int | None = None
    """Leads to re-score, counted when the run starts."""
    done: int = 0
    finished_at: datetime | None = Field(default=None, index=True)
    superseded: bool = False
