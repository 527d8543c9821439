"""Assignments stay one per lead when replicas race (PostgreSQL, where replicas share state)."""

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from leadrelay.db import create_engine, create_session_factory, run_migrations
from leadrelay.testing import wait_until
from router.assignments import service
from router.assignments.models import Assignment
from router.main import MIGRATIONS_DIR

DatabaseFactory = Callable[[str, str], Awaitable[str]]


BLOCKED_SESSIONS = text(
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


async def _someone_waits_on_a_lock(engine: AsyncEngine) -> bool:
    async with engine.connect() as connection:
        return bool((await connection.execute(BLOCKED_SESSIONS)).scalar())


@pytest.mark.postgres
async def test_racing_replicas_agree_on_one_assignment(make_database: DatabaseFactory) -> None:
    engine = create_engine(await make_database("postgres", "router"))
    try:
        await run_migrations(engine, MIGRATIONS_DIR)
        sessions = create_session_factory(engine)
        first_inserted = asyncio.Event()

        async def replica(delay_commit: bool) -> str:
            async with sessions() as session:
                if not delay_commit:
                    await first_inserted.wait()  # read after the other replica's uncommitted insert
                assignment = await service.assign(session=session, lead_id="lead-1", default_rep_id="rep-a")
                if delay_commit:
                    first_inserted.set()
                    # Commit only once the other replica's insert is blocked on our uncommitted row.
                    await wait_until(lambda: _someone_waits_on_a_lock(engine), timeout=10, what="a blocked insert")
                await session.commit()
                return assignment.id

        ids = await asyncio.gather(replica(delay_commit=True), replica(delay_commit=False))

        assert ids[0] == ids[1]
        async with sessions() as session:
            rows = (await session.exec(select(Assignment))).all()
        assert [row.id for row in rows] == [ids[0]]
    finally:
        await engine.dispose()


async def test_assigning_twice_returns_the_existing_assignment(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await run_migrations(engine, MIGRATIONS_DIR)
        sessions = create_session_factory(engine)
        async with sessions() as session:
            first = await service.assign(session=session, lead_id="lead-1", default_rep_id="rep-a")
            await session.commit()
        async with sessions() as session:
            again = await service.assign(session=session, lead_id="lead-1", default_rep_id="rep-b")
            await session.commit()
        assert again.id == first.id
        assert again.rep_id == "rep-a"
        assert again.rule_path == ["default"]
    finally:
        await engine.dispose()
