"""Lead read model and its timeline."""

from datetime import datetime
from typing import Any
from uuid import uuid4

from pydantic import EmailStr, field_validator
from sqlalchemy import JSON, BigInteger, Column
from sqlmodel import Field, SQLModel

from leadrelay.events import utcnow
from leadrelay.stages import LeadStage, stage_column
from leadrelay.validation import storable


class LeadBase(SQLModel):
    """Fields a client sends about a lead."""

    email: EmailStr = Field(max_length=320)
    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    company: str | None = Field(default=None, max_length=300)
    job_title: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=50)
    country: str | None = Field(default=None, max_length=2, min_length=2, description="ISO 3166-1 alpha-2")
    source: str = Field(default="api", max_length=100, min_length=1)
    campaign: str | None = Field(default=None, max_length=200)

    @field_validator("*")
    @classmethod
    def _storable(cls, value: object) -> object:
        return storable(value)

    @field_validator("email")
    @classmethod
    def _lowercase_email(cls, value: str) -> str:
        return value.strip().lower()

    @field_validator("country")
    @classmethod
    def _uppercase_country(cls, value: str | None) -> str | None:
        if not value:
            return value
        # Checked after upper-casing, which can lengthen text: "ß".upper() == "SS".
        code = value.upper()
        if not (len(code) == 2 and code.isascii() and code.isalpha()):
            raise ValueError("must be two letters A-Z (ISO 3166-1 alpha-2)")
        return code


class Lead(LeadBase, table=True):
    """A lead as intake knows it: what was sent, plus what the other services decided."""

    id: str = Field(default_factory=lambda: str(uuid4()), primary_key=True, max_length=36)
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    stage: LeadStage = Field(default=LeadStage.LEAD, sa_column=stage_column())
    score: int | None = None
    icp_version: str | None = Field(default=None, max_length=50)
    owner_rep_id: str | None = Field(default=None, max_length=100)
    assignment_id: str | None = Field(default=None, max_length=64)
    sla_due_at: datetime | None = None
    sla_state: str | None = Field(default=None, max_length=20)
    received_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)
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
