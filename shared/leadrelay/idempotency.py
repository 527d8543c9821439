"""Processed-event records, so a redelivered event changes nothing."""

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, insert
from sqlmodel import Field, SQLModel, col, select
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

    One SELECT and one multi-row INSERT for the whole batch. A concurrent claim of the same event
    makes the caller's transaction fail on the primary key, which rolls back its work: the caller
    then sees the event as already processed.
    """
    wanted = list(dict.fromkeys(event_ids))
    if not wanted:
        return set()
    statement = select(ProcessedEvent.event_id).where(
        ProcessedEvent.consumer == consumer, col(ProcessedEvent.event_id).in_(wanted)
    )
    seen = set((await session.exec(statement)).all())
    fresh = [event_id for event_id in wanted if event_id not in seen]
    if fresh:
        now = utcnow()
        await (await session.connection()).execute(
            insert(ProcessedEvent),
            [{"consumer": consumer, "event_id": event_id, "processed_at": now} for event_id in fresh],
        )
    return set(fresh)


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
