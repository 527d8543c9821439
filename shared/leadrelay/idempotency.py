"""Processed-event records, so a redelivered event changes nothing."""

import asyncio
import logging
from datetime import datetime, timedelta

from sqlalchemy import delete
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


async def claim(session: AsyncSession, *, consumer: str, event_id: str) -> bool:
    """Record the event as processed in this transaction; False if it already was.

    A concurrent claim of the same event makes the caller's commit fail on the primary key,
    which rolls back its work: the caller then sees the event as already processed.
    """
    if await session.get(ProcessedEvent, (consumer, event_id)) is not None:
        return False
    session.add(ProcessedEvent(consumer=consumer, event_id=event_id))
    await session.flush()
    return True


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
