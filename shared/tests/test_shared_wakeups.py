"""Push hand-offs: a commit that staged outbox rows wakes the relay, in this process and, on PostgreSQL, in others."""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import pytest

from leadrelay import outbox
from leadrelay.db import create_session_factory
from leadrelay.events import CloudEvent, LeadActivity, new_event, utcnow
from leadrelay.testing import Storage, migrated, migrations_of, recorded_statements, wait_until

ROUTER_MIGRATIONS = migrations_of("router")


def _event() -> CloudEvent[LeadActivity]:
    return new_event(
        LeadActivity(lead_id="lead-1", rep_id="rep-1", activity="contacted", occurred_at=utcnow()), source="test"
    )


async def test_commit_with_outbox_rows_wakes_and_one_without_does_not(router_db: Storage) -> None:
    sessions = create_session_factory(router_db.engine)
    wakes: list[int] = []
    outbox.wake_on_commit(sessions, lambda: wakes.append(1))

    async with sessions() as session:
        await session.commit()  # nothing staged
    assert wakes == []

    async with sessions() as session:
        outbox.add(session, _event())
        await session.rollback()  # staged, then rolled back: nothing to publish
        await session.commit()
    assert wakes == []

    async with sessions() as session:
        outbox.add(session, _event())
        await session.commit()
    assert wakes == [1]

    other_factory = create_session_factory(router_db.engine)  # another service's factory is not watched
    async with other_factory() as session:
        outbox.add(session, _event())
        await session.commit()
    assert wakes == [1]


async def test_while_its_relay_leads_a_process_wakes_only_its_own(router_db: Storage) -> None:
    # Only the leading relay publishes, so a leader's commits need not wake other processes: on
    # PostgreSQL that is a NOTIFY (a round trip, and a lock every notifying commit waits on) saved.
    sessions = create_session_factory(router_db.engine)
    wakes: list[int] = []
    leads: list[bool] = [False]
    outbox.wake_on_commit(sessions, lambda: wakes.append(1), leading=lambda: leads[0])
    on_postgres = router_db.engine.dialect.name == "postgresql"

    async def commit() -> int:
        """Commit a staged row; how many NOTIFY statements it sent."""
        with recorded_statements(router_db.engine) as statements:
            async with sessions() as session:
                outbox.add(session, _event())
                await session.commit()
        return sum(statement.startswith("NOTIFY") for statement in statements)

    assert (await commit(), wakes) == (1 if on_postgres else 0, [1])
    leads[0] = True
    assert (await commit(), wakes) == (0, [1, 1])


@pytest.mark.postgres
async def test_commit_in_another_process_wakes_the_relay_through_postgres(
    make_database: Callable[[str, str], Awaitable[str]],
) -> None:
    url = await make_database("postgres", "wakeups")
    async with migrated(url, ROUTER_MIGRATIONS) as listener_side, migrated(url, ROUTER_MIGRATIONS) as writer_side:
        woken = asyncio.Event()
        listening = asyncio.create_task(outbox.listen_for_commits(listener_side.engine, woken.set))
        try:
            await wait_until(_is_set(woken), timeout=10, what="the listener's first wake-up")  # it wakes on connect
            woken.clear()

            writer = create_session_factory(writer_side.engine)  # a separate engine: another process's pool
            outbox.wake_on_commit(writer, lambda: None)
            async with writer() as session:
                outbox.add(session, _event())
                await session.commit()

            await wait_until(_is_set(woken), timeout=10, what="the NOTIFY of the other engine's commit")
        finally:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listening


def _is_set(event: asyncio.Event) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return event.is_set()

    return probe
