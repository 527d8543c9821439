"""Stored agreements: numbered versions per kind, their approvals and transitions, and one head row per kind."""

from datetime import datetime
from enum import Enum, StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, ForeignKey, Index, Integer, UniqueConstraint, text
from sqlalchemy import Enum as SqlEnum
from sqlmodel import Field, SQLModel

from leadrelay.events import utcnow

_ID = BigInteger().with_variant(Integer(), "sqlite")


def _enum_column(enum: type[Enum]) -> Column[Any]:
    # VARCHAR holding the values (no database enum type to migrate), read back as the enum.
    values = SqlEnum(enum, native_enum=False, length=20, values_callable=lambda members: [m.value for m in members])
    return Column(values, nullable=False)


class VersionStatus(StrEnum):
    """Where a version is in its life."""

    DRAFT = "draft"
    ACTIVE = "active"
    SUPERSEDED = "superseded"
    REJECTED = "rejected"


class Transition(StrEnum):
    """What happened to a version; each one is kept, published as `agreement.<transition>` and audited."""

    DRAFTED = "drafted"
    APPROVED = "approved"
    REJECTED = "rejected"
    ACTIVATED = "activated"
    SUPERSEDED = "superseded"


class AgreementHead(SQLModel, table=True):
    """One row per kind: the last version number given and the active version.

    Every change of a kind locks this row first (SELECT ... FOR UPDATE on PostgreSQL; SQLite has
    one writer), so numbering, approvals and activation of one kind happen one at a time.
    """

    __tablename__ = "agreement_head"

    kind: str = Field(primary_key=True, max_length=40)
    latest_version: int = 0
    active_version: int | None = None
    updated_at: datetime = Field(default_factory=utcnow)


class AgreementVersion(SQLModel, table=True):
    """One version of a kind's document; at most one per kind is active (a partial unique index)."""

    __tablename__ = "agreement_version"
    __table_args__ = (
        UniqueConstraint("kind", "version", name="uq_agreement_version_kind_version"),
        Index(
            "uq_agreement_version_one_active",
            "kind",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
    )

    id: int | None = Field(default=None, sa_column=Column(_ID, primary_key=True, autoincrement=True))
    kind: str = Field(max_length=40)
    version: int
    status: VersionStatus = Field(sa_column=_enum_column(VersionStatus))
    note: str = Field(default="", max_length=1000)
    document: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    required: dict[str, list[str]] = Field(sa_column=Column(JSON, nullable=False))
    author_key_id: str = Field(max_length=40)
    author_name: str = Field(max_length=100)
    author_team: str = Field(max_length=20)
    created_at: datetime = Field(default_factory=utcnow)
    activated_at: datetime | None = None


class AgreementApproval(SQLModel, table=True):
    """One key's approval of a version; a key approves a version at most once."""

    __tablename__ = "agreement_approval"
    __table_args__ = (UniqueConstraint("version_id", "key_id", name="uq_agreement_approval_version_key"),)

    id: int | None = Field(default=None, sa_column=Column(_ID, primary_key=True, autoincrement=True))
    version_id: int = Field(sa_column=Column(_ID, ForeignKey("agreement_version.id"), nullable=False, index=True))
    team: str = Field(max_length=20)
    key_id: str = Field(max_length=40)
    key_name: str = Field(max_length=100)
    at: datetime = Field(default_factory=utcnow)


class AgreementTransition(SQLModel, table=True):
    """One step in a version's history: who (key), for which team, when, and why."""

    __tablename__ = "agreement_transition"

    id: int | None = Field(default=None, sa_column=Column(_ID, primary_key=True, autoincrement=True))
    version_id: int = Field(sa_column=Column(_ID, ForeignKey("agreement_version.id"), nullable=False, index=True))
    action: Transition = Field(sa_column=_enum_column(Transition))
    key_id: str | None = Field(default=None, max_length=40)
    key_name: str | None = Field(default=None, max_length=100)
    team: str | None = Field(default=None, max_length=20)
    reason: str | None = Field(default=None, max_length=1000)
    at: datetime = Field(default_factory=utcnow)
