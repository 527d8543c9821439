"""A webhook source as stored: its kind, encrypted secrets and field mapping."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, String
from sqlmodel import Field, SQLModel

from leadrelay.events import utcnow


class SourceKind(StrEnum):
    """How a sender signs and shapes its webhooks (docs/sources.md has one section per kind)."""

    HUBSPOT = "hubspot"
    MAUTIC = "mautic"
    SEGMENT = "segment"
    MARKETO = "marketo"
    PARDOT = "pardot"
    STANDARD = "standard"


class WebhookSource(SQLModel, table=True):
    """A configured sender; `secrets` holds Fernet tokens, never a secret in clear."""

    __tablename__ = "webhook_source"

    name: str = Field(primary_key=True, max_length=100)
    kind: SourceKind = Field(sa_column=Column(String(20), nullable=False))
    # [{"token": Fernet token, "last4": "...", "expires_at": ISO 8601 or null}]
    secrets: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    field_mapping: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    token_header: str | None = Field(default=None, max_length=100)
    enabled: bool = True
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
