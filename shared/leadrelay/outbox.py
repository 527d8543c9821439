"""Transactional outbox: state and outgoing events commit together; a relay publishes them in order."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any

import asyncpg
from aiokafka.structs import RecordMetadata
from sqlalchemy import BigInteger, Integer, LargeBinary, delete, event, func, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import SessionTransaction
from sqlmodel import Column, Field, Session, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.db import SessionFactory, stage_insert
from leadrelay.events import CloudEvent, utcnow
from leadrelay.kafka import KafkaBus, OutgoingMessage
from leadrelay.leader import LeaderLock
from leadrelay.metrics import ServiceMetrics
from leadrelay.wakeups import ProcessWakeups

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


_STAGED = "leadrelay.outbox.staged"


def add(session: AsyncSession, *events: CloudEvent[Any]) -> None:
    """Stage events in the caller's transaction; they are published only if it commits.

    Staged as plain rows and inserted together just before the transaction commits
    (`db.stage_insert`): an ORM object per event, flushed one INSERT at a time, cost more than
    the rest of a handler.
    """
    now = utcnow()
    stage_insert(
        session,
        OutboxMessage,
        [
            {
                "topic": cloud_event.topic,
                "key": cloud_event.subject,
                "event_id": cloud_event.id,
                "event_type": cloud_event.type,
                "payload": cloud_event.to_bytes(),
                "created_at": now,
            }
            for cloud_event in events
        ],
    )
    session.info[_STAGED] = True


# Commits that staged outbox rows notify this channel on PostgreSQL, so the relay of whichever
# process leads (intake runs several workers) hears of rows committed by the others.
NOTIFY_CHANNEL = "leadrelay_outbox"


def wake_on_commit(
    sessions: SessionFactory,
    wake: Callable[[], None],
    *,
    others: ProcessWakeups | None = None,
    leading: Callable[[], bool] = lambda: False,
) -> None:
    """Call `wake` after every commit of a session from `sessions` that staged outbox rows.

    This is what makes hand-offs push, not poll: an HTTP write, a consumer's batch or a job commits,
    and the relay publishes at once. The relays of other processes sharing the database hear of it
    too: on PostgreSQL through NOTIFY (see `listen_for_commits`), on SQLite through `others`.
    Only while `leading()` says this process's relay leads do they not: no other relay would publish.
    On PostgreSQL that saves a round trip per transaction, and a commit that notifies takes a lock
    every such commit of the server waits on.
    """
    session_class: type[Session] = sessions.kw["sync_session_class"]

    def before_commit(session: Session) -> None:
        if session.info.get(_STAGED) and session.get_bind().dialect.name == "postgresql" and not leading():
            session.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))

    def after_commit(session: Session) -> None:
        if session.info.pop(_STAGED, False):
            wake()
            if others is not None and not leading():
                others.notify_others()

    def after_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
        if previous_transaction.parent is None and not previous_transaction.nested:
            session.info.pop(_STAGED, None)

    event.listen(session_class, "before_commit", before_commit)
    event.listen(session_class, "after_commit", after_commit)
    event.listen(session_class, "after_soft_rollback", after_rollback)


async def listen_for_commits(
    engine: AsyncEngine, wake: Callable[[], None], *, channel: str = NOTIFY_CHANNEL, retry_interval: float = 1.0
) -> None:
    """On PostgreSQL, call `wake` whenever any process NOTIFYs `channel` (outbox rows committed by default);
    elsewhere return.

    SQLite has no such channel: rows committed by another process are found at the relay's next
    poll (`OUTBOX_POLL_INTERVAL_SECONDS`).
    """
    if engine.dialect.name != "postgresql":
        return
    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    while True:
        try:
            connection = await asyncpg.connect(dsn, timeout=5)
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            logger.warning(
                "cannot listen for commits, will retry", extra={"channel": channel, "error": type(exc).__name__}
            )
            await asyncio.sleep(retry_interval)
            continue
        closed = asyncio.Event()
        try:
            connection.add_termination_listener(partial(_set_on_close, closed))
            await connection.add_listener(channel, lambda *_notification: wake())
            wake()  # whatever was committed while nobody listened
            await closed.wait()
            logger.warning("lost the notification connection, reconnecting", extra={"channel": channel})
        finally:
            with contextlib.suppress(Exception):
                await connection.close(timeout=2)


def _set_on_close(closed: asyncio.Event, _connection: object) -> None:
    closed.set()


@contextlib.asynccontextmanager
async def listening(engine: AsyncEngine | None, wake: Callable[[], None], *, channel: str) -> AsyncIterator[None]:
    """While the block runs, call `wake` whenever any process commits a `notify_on_commit(..., channel)`
    (PostgreSQL only; with no engine, or on SQLite, nothing)."""
    if engine is None:
        yield
        return
    listener = asyncio.create_task(listen_for_commits(engine, wake, channel=channel))
    try:
        yield
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener


PublishedHook = Callable[[AsyncSession, Sequence[OutboxMessage], Sequence[RecordMetadata]], Awaitable[None]]
"""Runs in the relay's transaction after a batch was acknowledged, with where each row was stored."""


def _messages(rows: Sequence[OutboxMessage]) -> list[OutgoingMessage]:
    """What the broker gets for outbox rows: the event as stored, keyed, its id and type in headers."""
    return [
        OutgoingMessage(
            topic=row.topic,
            key=row.key,
            value=row.payload,
            headers={"ce_id": row.event_id, "ce_type": row.event_type},
        )
        for row in rows
    ]


def _by_id(row: OutboxMessage) -> int:
    return row.id or 0


async def _nothing(_session: AsyncSession, _rows: Sequence[OutboxMessage], _stored: Sequence[RecordMetadata]) -> None:
    return None


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
        on_published: PublishedHook = _nothing,
    ) -> None:
        self._engine = engine
        self._sessions = sessions
        self._bus = bus
        self._metrics = metrics
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._max_backoff = max(max_backoff, poll_interval)
        self._on_published = on_published
        self._wakeup = asyncio.Event()
        self._stopping = False
        # Processes sharing a database elect one relay, so two relays never interleave one lead's events.
        # A standby tries at most once per poll interval, however often commits wake it; the leader
        # confirms its lock as seldom, not with a round trip before every batch. Two relays
        # overlapping for that long publish some rows twice, which consumers drop by event id.
        self.leader = LeaderLock(engine, "outbox-relay", retry_interval=poll_interval, check_interval=poll_interval)
        oldest = select(OutboxMessage.id).order_by(col(OutboxMessage.id)).limit(batch_size)
        self._take_oldest = (
            delete(OutboxMessage)
            .where(col(OutboxMessage.id).in_(oldest.scalar_subquery()))
            .returning(OutboxMessage)
            .execution_options(synchronize_session=False)
        )

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
            # A short batch emptied the table as of its read; rows committed since then woke the
            # relay, so waiting for a wake-up misses nothing and saves a read that finds nothing.
            if published < self._batch_size and not self._stopping:
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
        # This read sees every commit that woke the relay so far; only later ones need to wake it again.
        self._wakeup.clear()
        if self._engine.dialect.name == "postgresql":
            published = await self._relay_in_one_transaction()
        else:
            published = await self._relay_without_holding_the_connection()
        # A short batch drained the table; only a full one needs counting what is left.
        self._metrics.outbox_backlog.set(0 if published < self._batch_size else await self.backlog())
        return published

    async def _relay_in_one_transaction(self) -> int:
        # Rows are taken out and the transaction commits only once the broker has them, so a failed
        # publish rolls their removal back: four round trips where reading and deleting apart took seven.
        async with self._sessions() as session:
            rows = sorted((await session.exec(self._take_oldest)).scalars().all(), key=_by_id)
            if not rows:
                return 0
            stored = await self._bus.publish_batch(_messages(rows))
            await self._on_published(session, rows, stored)
            await session.commit()
        return len(rows)

    async def _relay_without_holding_the_connection(self) -> int:
        # On SQLite (one connection per process) holding it while the broker acknowledges would
        # stall every other write of the process for the round trip.
        async with self._sessions() as session:
            rows = (
                await session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id)).limit(self._batch_size))
            ).all()
        if not rows:
            return 0
        stored = await self._bus.publish_batch(_messages(rows))
        async with self._sessions() as session:
            await self._on_published(session, rows, stored)
            await session.exec(delete(OutboxMessage).where(col(OutboxMessage.id).in_([r.id for r in rows])))
            await session.commit()
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
