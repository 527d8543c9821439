"""The audit log: who did which admin action, when, kept per service, read at `GET /v1/audit`."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import JSON, BigInteger, Column, Integer
from sqlmodel import Field, SQLModel, col, select
from sqlmodel._compat import SQLModelConfig
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.apikeys import AdminKey, ApiKey
from leadrelay.db import SessionDep
from leadrelay.events import utcnow
from leadrelay.openapi import problem_responses


class AuditEntryBase(SQLModel):
    """One admin action: the actor is a key (never a secret), the target names what changed."""

    at: datetime = Field(default_factory=utcnow, index=True)
    actor_key_id: str | None = Field(default=None, max_length=40)
    actor_name: str | None = Field(default=None, max_length=100)
    actor_team: str | None = Field(default=None, max_length=20)
    action: str = Field(max_length=100, index=True)
    target: str = Field(max_length=200)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class AuditEntry(AuditEntryBase, table=True):
    """A stored audit entry, written in the same transaction as the action it records."""

    __tablename__ = "audit_entry"

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    )


_EXAMPLE: dict[str, Any] = {
    "id": 42,
    "at": "2026-11-27T10:15:00Z",
    "actor_key_id": "key_development",
    "actor_name": "development",
    "actor_team": "ops",
    "action": "key.revoked",
    "target": "key_3f9a1c2b7d4e",
    "detail": {"name": "hubspot-sync"},
}


class AuditEntryPublic(AuditEntryBase):
    """An audit entry as `GET /v1/audit` shows it."""

    model_config = SQLModelConfig(json_schema_extra={"examples": [_EXAMPLE]})

    id: int


class AuditPage(BaseModel):
    """Newest first; pass `before` = the last id to read on."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"entries": [_EXAMPLE]}]})

    entries: list[AuditEntryPublic]


def record(session: AsyncSession, *, actor: ApiKey | None, action: str, target: str, detail: dict[str, Any]) -> None:
    """Add an audit entry to the caller's transaction (it commits or rolls back with the action)."""
    session.add(
        AuditEntry(
            actor_key_id=actor.id if actor else None,
            actor_name=actor.name if actor else None,
            actor_team=actor.team if actor else None,
            action=action,
            target=target,
            detail=detail,
        )
    )


async def list_entries(
    session: AsyncSession, *, action: str | None = None, before: int | None = None, limit: int = 100
) -> list[AuditEntry]:
    """Entries newest first, optionally of one action, below an id."""
    query = select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(limit)
    if action:
        query = query.where(AuditEntry.action == action)
    if before is not None:
        query = query.where(col(AuditEntry.id) < before)
    return list((await session.exec(query)).all())


audit_router = APIRouter(prefix="/v1", tags=["audit"])


@audit_router.get(
    "/audit",
    response_model=AuditPage,
    summary="Read the audit log",
    responses=problem_responses(
        401, 403, 422, instance="/v1/audit", details={403: "The API key lacks the scope(s): admin."}
    ),
)
async def read_audit(
    session: SessionDep,
    _key: AdminKey,
    action: Annotated[str | None, Query(max_length=100, examples=["key.created"])] = None,
    before: Annotated[int | None, Query(ge=1, description="Only entries with a smaller id (paging).")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    """This service's admin actions, newest first."""
    entries = await list_entries(session, action=action, before=before, limit=limit)
    return AuditPage(entries=[AuditEntryPublic.model_validate(entry, from_attributes=True) for entry in entries])
