"""SLA timers: one per obligation however often it is announced, and breached once when due."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from leadrelay.db import SessionFactory, create_engine, create_session_factory, run_migrations
from leadrelay.events import LeadAssigned
from leadrelay.stages import SlaState
from leadrelay.testing import count_rows, wait_until
from sla_monitor.main import MIGRATIONS_DIR
from sla_monitor.timers import service
from sla_monitor.timers.models import SlaTimer

DatabaseFactory = Callable[[str, str], Awaitable[str]]

ASSIGNED_AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
RESPONSE_TIME = timedelta(minutes=5)


def _assignment(lead_id: str, *, rep_id: str = "rep-a", assigned_at: datetime = ASSIGNED_AT) -> LeadAssigned:
    return LeadAssigned(
        lead_id=lead_id,
        assignment_id=f"assignment-{lead_id}",
        rep_id=rep_id,
        rule_path=["default"],
        candidates=[rep_id],
        routing_version="test",
        assigned_at=assigned_at,
    )


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """The sla-monitor's schema, by its own migrations, on the test's backend."""
    engine = create_engine(database_url)
    await run_migrations(engine, MIGRATIONS_DIR)
    yield engine
    await engine.dispose()


async def _start(sessions: SessionFactory, assignment: LeadAssigned) -> SlaTimer:
    async with sessions() as session:
        timer = await service.start(session=session, assignment=assignment, response_time=RESPONSE_TIME)
        await session.commit()
        return timer


async def test_starting_a_timer_again_returns_the_first_one(engine: AsyncEngine, database_url: str) -> None:
    sessions = create_session_factory(engine)
    first = await _start(sessions, _assignment("lead-1"))
    again = await _start(sessions, _assignment("lead-1", rep_id="rep-b", assigned_at=ASSIGNED_AT + timedelta(hours=1)))

    assert again.id == first.id
    assert (again.rep_id, again.status) == ("rep-a", SlaState.RUNNING)
    assert again.due_at.replace(tzinfo=UTC) == ASSIGNED_AT + RESPONSE_TIME
    assert await count_rows(database_url, "sla_timer") == 1


async def test_due_timers_are_breached_once(engine: AsyncEngine, database_url: str) -> None:
    sessions = create_session_factory(engine)
    for lead_id, minutes_ago in (("overdue", 10), ("just-due", 5), ("not-yet", 1)):
        await _start(sessions, _assignment(lead_id, assigned_at=ASSIGNED_AT - timedelta(minutes=minutes_ago)))

    async with sessions() as session:
        assert await service.breach_due(session=session, now=ASSIGNED_AT) == 2
        await session.commit()
    async with sessions() as session:
        assert await service.breach_due(session=session, now=ASSIGNED_AT) == 0
        await session.commit()
        timers = {timer.lead_id: timer for timer in (await session.exec(select(SlaTimer))).all()}

    assert {lead_id: timer.status for lead_id, timer in timers.items()} == {
        "overdue": SlaState.BREACHED,
        "just-due": SlaState.BREACHED,
        "not-yet": SlaState.RUNNING,
    }
    assert timers["overdue"].closed_at is not None
    assert timers["not-yet"].closed_at is None
    assert await count_rows(database_url, "outbox") == 2  # one sla.breached each


BLOCKED_SESSIONS = text(
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


async def _someone_waits_on_a_lock(engine: AsyncEngine) -> bool:
    async with engine.connect() as connection:
        return bool((await connection.execute(BLOCKED_SESSIONS)).scalar())


@pytest.mark.postgres
async def test_replicas_starting_the_same_timer_agree_on_one(make_database: DatabaseFactory) -> None:
    engine = create_engine(await make_database("postgres", "sla_monitor"))
    try:
        await run_migrations(engine, MIGRATIONS_DIR)
        sessions = create_session_factory(engine)
        first_inserted = asyncio.Event()

        async def replica(delay_commit: bool) -> str:
            async with sessions() as session:
                if not delay_commit:
                    await first_inserted.wait()  # look before the other replica commits its insert
                timer = await service.start(
                    session=session, assignment=_assignment("lead-1"), response_time=RESPONSE_TIME
                )
                if delay_commit:
                    first_inserted.set()
                    # Commit only once the other replica's insert waits on our uncommitted row.
                    await wait_until(lambda: _someone_waits_on_a_lock(engine), timeout=10, what="a blocked insert")
                await session.commit()
                return timer.id

        ids = await asyncio.gather(replica(delay_commit=True), replica(delay_commit=False))

        assert ids[0] == ids[1]
        async with sessions() as session:
            assert [timer.id for timer in (await session.exec(select(SlaTimer))).all()] == [ids[0]]
    finally:
        await engine.dispose()
