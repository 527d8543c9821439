"""Lead read model and its timeline."""

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import uuid4

from sqlalchemy import JSON, BigInteger, Column, Index, text
from sqlmodel import Field, SQLModel

from leadrelay.events import utcnow
from leadrelay.stages import LeadStage, stage_column


class RoutingOutcome(StrEnum):
    """Where the router's latest decision sent the lead: the event type that announced it."""

    ASSIGNED = "assigned"
    """lead.assigned: a rep owns it (`owner_rep_id`)."""
    QUEUED = "queued"
    """lead.queued: it waits in a team's queue (`queue_team_id`) for a rep to pick it up."""
    NURTURED = "nurtured"
    """lead.nurtured: back to marketing, no rep."""


class LeadBase(SQLModel):
    """Fields a client sends about a lead (LeadCreate normalises them before anything is stored)."""

    email: str = Field(max_length=320, description="Lower-cased and validated (no DNS look-up).")
    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    company: str | None = Field(default=None, max_length=300)
    job_title: str | None = Field(default=None, max_length=200)
    # Before phone: a phone number is read in the lead's country.
    country: str | None = Field(
        default=None,
        max_length=2,
        description="ISO 3166-1 alpha-2; alpha-3, numeric codes and English names are converted.",
    )
    phone: str | None = Field(default=None, max_length=50, description="Stored in E.164.")
    industry: str | None = Field(default=None, max_length=200)
    employees: int | None = Field(default=None, ge=0, le=10_000_000)
    annual_revenue: int | None = Field(
        default=None, ge=0, le=10**15, sa_type=BigInteger, description="In whole units of the CRM's currency."
    )
    website: str | None = Field(default=None, max_length=2048)
    source: str = Field(default="api", max_length=100, min_length=1)
    campaign: str | None = Field(default=None, max_length=200)
    utm_source: str | None = Field(default=None, max_length=200)
    utm_medium: str | None = Field(default=None, max_length=200)
    utm_campaign: str | None = Field(default=None, max_length=200)
    crm_id: str | None = Field(default=None, max_length=100, description="The person's id in the CRM: one lead per id.")
    marketing_opt_in: bool | None = None


class Lead(LeadBase, table=True):
    """A lead as intake knows it: what was sent, plus what the other services decided."""

    __table_args__ = (
        # One lead per person: a second submission re-engages the lead that holds the address.
        # Leads merged into another (duplicates from before this rule) keep their address, outside the index.
        Index(
            "uq_lead_person_email",
            "email",
            unique=True,
            sqlite_where=text("merged_into_id IS NULL"),
            postgresql_where=text("merged_into_id IS NULL"),
        ),
        Index("uq_lead_crm_id", "crm_id", unique=True),
    )

    id: str = Field(default_factory=lambda: str(uuid4()), primary_key=True, max_length=36)
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    email_domain: str | None = Field(default=None, max_length=255, index=True)
    email_free_mail: bool = False
    email_disposable: bool = False
    email_lookalike: bool = False
    merged_into_id: str | None = Field(default=None, max_length=36)
    stage: LeadStage = Field(default=LeadStage.LEAD, sa_column=stage_column())
    score: int | None = None
    icp_version: str | None = Field(default=None, max_length=50)
    grade: str | None = Field(default=None, max_length=2, index=True)
    fit: int | None = None
    engagement: int | None = None
    mql: bool = Field(default=False, index=True)
    account_id: str | None = Field(default=None, max_length=100)
    owner_rep_id: str | None = Field(default=None, max_length=100)
    assignment_id: str | None = Field(default=None, max_length=64)
    # 0 until routed; a reassignment carries a higher one, so a late older announcement changes nothing.
    assignment_sequence: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    routing_outcome: str | None = Field(default=None, max_length=20, description="A RoutingOutcome value.")
    queue_team_id: str | None = Field(default=None, max_length=100, index=True)
    # The most urgent open obligation (breached, then warning, then running; the soonest deadline
    # first), else the latest closed one: what a list of leads shows and filters on.
    sla_due_at: datetime | None = None
    sla_state: str | None = Field(default=None, max_length=20, index=True)
    sla_obligations: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False, server_default=text("'{}'"))
    )
    """Obligation name -> its latest state (folded in leads/handlers.py): the view behind the two above."""
    received_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow, index=True)
    reengaged_at: datetime | None = None
    reengagement_count: int = 0
    redriven_at: datetime | None = None
    redrive_count: int = 0
    # Where the broker stored the latest lead.received: re-drive asks the broker whether it still has it.
    received_event_id: str | None = Field(default=None, max_length=64)
    published_partition: int | None = None
    published_offset: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    published_at: datetime | None = None


class TimelineEntry(SQLModel, table=True):
    """One event in a lead's history, at most once per event id."""

    __tablename__ = "timeline_entry"

    id: int | None = Field(default=None, primary_key=True)
    lead_id: str = Field(foreign_key="lead.id", index=True, max_length=36)
    event_id: str = Field(unique=True, max_length=64)
    type: str = Field(max_length=100)
    occurred_at: datetime
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
