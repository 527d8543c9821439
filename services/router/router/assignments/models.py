"""Stored assignments."""

from datetime import datetime
from uuid import uuid4

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from leadrelay.events import utcnow


class Assignment(SQLModel, table=True):
    """A lead given to a rep; the unique lead id makes concurrent replicas agree on one."""

    id: str = Field(default_factory=lambda: str(uuid4()), primary_key=True, max_length=36)
    lead_id: str = Field(unique=True, max_length=36)
    rep_id: str = Field(max_length=100, index=True)
    rule_path: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    candidates: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    routing_version: str = Field(max_length=50)
    assigned_at: datetime = Field(default_factory=utcnow)
