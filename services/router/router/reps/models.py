"""A rep as stored: teams, weight, caps, skills, availability and channels (secrets as Fernet tokens)."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from leadrelay.events import utcnow

REP_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}$"


class Rep(SQLModel, table=True):
    """A stored rep; `channels` holds encrypted secrets and Slack URLs, never one in clear."""

    __tablename__ = "rep"

    id: str = Field(primary_key=True, max_length=100)
    name: str = Field(max_length=200)
    teams: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    weight: float = 1.0
    daily_cap: int | None = None
    weekly_cap: int | None = None
    languages: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    territories: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    active: bool = True
    available: bool = True
    # [{"start": ISO 8601, "end": ISO 8601}]
    out_of_office: list[dict[str, str]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    crm_user_id: str | None = Field(default=None, max_length=100)
    # [{"kind": "webhook", "url": ..., "secret": token, "secret_last4": ...},
    #  {"kind": "slack", "url": token, "url_last4": ...}]
    channels: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    version: int = 1
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
