"""Transactional outbox: state and outgoing events commit together; a relay publishes them in order."""

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, LargeBinary, delete, func
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Column, Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.db import SessionFactory
from leadrelay.events import CloudEvent, utcnow
from leadrelay.kafka import KafkaBus, OutgoingMessage
from leadrelay.leader import LeaderLock
from leadrelay.metrics import ServiceMetrics

logger = logging.getLogger(__name__)


class OutboxMessage(SQLModel, table=True):
    """An event committed with the state change that caused it, waiting to be published."""

    __tablename__ = "outbox"

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    )
    topic: str = Field(max_length=200)
    key: str = Field(max_length=200)
    event_id: str = Field(max_length=64)
    event_type: str = Field(max_length=100)
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


def add(session: AsyncSession, *events: CloudEvent[Any]) -> None:
    """Stage events in the caller's transaction; they are published only if it commits."""
    for event in events:
        session.add(
            OutboxMessage(
                topic=event.topic,
                key=event.subject,
                event_id=event.id,
                event_type=event.type,
                payload=event.to_bytes(),
            )
        )


class OutboxRelay:
    """Publishes committed outbox rows to Kafka in id order, then deletes them."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        sessions: SessionFactory,
        bus: KafkaBus,
        metrics: ServiceMetrics,
        batch_size: int,
        poll_interval: float,
        max_backoff: float = 5.0,
    ) -> None:
        self._engine = engine
        self._sessions = sessions
        self._bus = bus
        self._metrics = metrics
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._max_backoff = max(max_backoff, poll_interval)
        self._wakeup = asyncio.Event()
        self._stopping = False
        # Processes sharing a database elect one relay, so two relays never interleave one lead's events.
        # A standby tries at most once per poll interval, however often commits wake it.
        self.leader = LeaderLock(engine, "outbox-relay", retry_interval=poll_interval)

    def wake(self) -> None:
        """Ask the relay to look for new rows now instead of at its next poll."""
        self._wakeup.set()

    async def run(self) -> None:
        """Relay until stopped; broker or database failures back off and retry, never drop rows."""
        backoff = self._poll_interval
        while not self._stopping:
            try:
                published = await self.relay_pending()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("outbox relay failed, will retry", extra={"error": repr(exc), "retry_in": backoff})
                await self.leader.release()
                await self._refresh_backlog()
                # A plain sleep: new rows must not cut the backoff short while the broker is down.
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            backoff = self._poll_interval
            if published == 0 and not self._stopping:
                await self._sleep(self._poll_interval)

    async def stop(self, flush_timeout: float = 5.0) -> None:
        """Stop after one last best-effort flush; whatever is left waits in the table."""
        self._stopping = True
        self._wakeup.set()
        try:
            async with asyncio.timeout(flush_timeout):
                while await self.relay_pending():
                    pass
        except Exception as exc:  # broker gone at shutdown: rows stay and go out at next start
            logger.info("outbox left rows for the next start", extra={"error": repr(exc)})
        await self.leader.release()

    async def relay_pending(self) -> int:
        """Publish one batch of pending rows; returns how many were published."""
        if not await self.leader.try_acquire():
            return 0
        async with self._sessions() as session:
            rows = (
                await session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id)).limit(self._batch_size))
            ).all()
            if not rows:
                self._metrics.outbox_backlog.set(0)
                return 0
            messages = [
                OutgoingMessage(
                    topic=row.topic,
                    key=row.key,
                    value=row.payload,
                    headers={"ce_id": row.event_id, "ce_type": row.event_type},
                )
                for row in rows
            ]
            await self._bus.publish_batch(messages)
            await session.exec(delete(OutboxMessage).where(col(OutboxMessage.id).in_([r.id for r in rows])))
            await session.commit()
            # A short batch drained the table; only a full one needs counting what is left.
            self._metrics.outbox_backlog.set(0 if len(rows) < self._batch_size else await self.backlog())
            return len(rows)

    async def backlog(self) -> int:
        """Rows waiting to be published."""
        async with self._sessions() as session:
            count: int = (await session.exec(select(func.count()).select_from(OutboxMessage))).one()
            return count

    async def _refresh_backlog(self) -> None:
        # While publishing fails the backlog grows; keep the gauge true for alerting.
        with contextlib.suppress(Exception):
            self._metrics.outbox_backlog.set(await self.backlog())

    async def _sleep(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._wakeup.wait()
        except TimeoutError:
            pass
        self._wakeup.clear()
