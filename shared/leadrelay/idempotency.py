"""Processed-event records, so a redelivered event changes nothing."""

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field, SQLModel, col
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.db import SessionFactory
from leadrelay.events import utcnow

logger = logging.getLogger(__name__)


class ProcessedEvent(SQLModel, table=True):
    """An event a consumer has already handled, written in the handler's own transaction."""

    __tablename__ = "processed_event"

    consumer: str = Field(primary_key=True, max_length=100)
    event_id: str = Field(primary_key=True, max_length=64)
    processed_at: datetime = Field(default_factory=utcnow, index=True)


async def claim_many(session: AsyncSession, *, consumer: str, event_ids: Sequence[str]) -> set[str]:
    """Record events as processed in this transaction; returns the ids that were not already.

    One INSERT ... ON CONFLICT DO NOTHING for the whole batch: the rows it returns are the fresh
    claims. A concurrent claim of the same event waits for the other transaction: if that one
    commits, the event is not returned here (already processed); if it rolls back, it is.
    """
    wanted = list(dict.fromkeys(event_ids))
    if not wanted:
        return set()
    now = utcnow()
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        rows = await connection.execute(_CLAIM_ALL, {"consumer": consumer, "event_ids": wanted, "processed_at": now})
    else:
        rows = await connection.execute(
            _CLAIM_EACH, [{"consumer": consumer, "event_id": event_id, "processed_at": now} for event_id in wanted]
        )
    return set(rows.scalars().all())


# Built once: every batch of every consumer runs it. On PostgreSQL the ids go as one array, so the
# text is the same whatever the batch (a multi-row VALUES is a new statement to prepare and plan per size).
_COLUMNS = ProcessedEvent.__table__.c  # type: ignore[attr-defined]
_CLAIM_ALL = (
    postgresql.insert(ProcessedEvent)
    .from_select(
        ["consumer", "event_id", "processed_at"],
        select(
            bindparam("consumer", type_=_COLUMNS.consumer.type),
            func.unnest(bindparam("event_ids", type_=postgresql.ARRAY(_COLUMNS.event_id.type))),
            bindparam("processed_at", type_=_COLUMNS.processed_at.type),
        ),
    )
    .on_conflict_do_nothing()
    .returning(col(ProcessedEvent.event_id))
)
_CLAIM_EACH = sqlite.insert(ProcessedEvent).on_conflict_do_nothing().returning(col(ProcessedEvent.event_id))


async def claim(session: AsyncSession, *, consumer: str, event_id: str) -> bool:
    """Record one event as processed in this transaction; False if it already was."""
    return bool(await claim_many(session, consumer=consumer, event_ids=[event_id]))


async def is_processed(session: AsyncSession, *, consumer: str, event_id: str) -> bool:
    """Whether a consumer has committed the handling of an event."""
    return await session.get(ProcessedEvent, (consumer, event_id)) is not None


async def prune(session: AsyncSession, *, older_than: datetime) -> int:
    """Forget records older than the broker's retention; a redelivery cannot be older."""
    result = await session.exec(delete(ProcessedEvent).where(col(ProcessedEvent.processed_at) < older_than))
    return int(result.rowcount or 0)


async def prune_periodically(sessions: SessionFactory, *, retention: timedelta, interval: float = 3600.0) -> None:
    """Forget processed-event records older than the retention, once an hour."""
    while True:
        async with sessions() as session:
            removed = await prune(session, older_than=utcnow() - retention)
            await session.commit()
        if removed:
            logger.info("pruned processed-event records", extra={"count": removed})
        await asyncio.sleep(interval)
