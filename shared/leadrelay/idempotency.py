"""Processed-event records, so a redelivered event changes nothing."""

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import Field, SQLModel, col
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.db import SessionFactory, per_dialect
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
    rows = await connection.execute(
        _CLAIM[connection.dialect.name],
        [{"consumer": consumer, "event_id": event_id, "processed_at": now} for event_id in wanted],
    )
    return set(rows.scalars().all())


# Built once: every batch of every consumer runs it.
_CLAIM = per_dialect(
    lambda dialect: dialect.insert(ProcessedEvent).on_conflict_do_nothing().returning(col(ProcessedEvent.event_id))
)


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
