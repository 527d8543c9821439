"""Transactional outbox and its relay, on SQLite and PostgreSQL, against a real broker."""

import asyncio
import logging
from collections import defaultdict

import pytest
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from leadrelay import outbox
from leadrelay.broker import EmbeddedBroker
from leadrelay.db import create_engine, new_row, stage_insert
from leadrelay.events import AccountChanged, CloudEvent, EventData, LeadActivity, Topic, new_event, utcnow
from leadrelay.idempotency import ProcessedEvent
from leadrelay.kafka import KafkaBus
from leadrelay.leader import LeaderLock
from leadrelay.metrics import ServiceMetrics
from leadrelay.outbox import OutboxRelay
from leadrelay.testing import (
    Kafka,
    Storage,
    free_port,
    metric,
    migrated,
    migrations_of,
    recorded_statements,
    wait_until,
)

ROUTER_MIGRATIONS = migrations_of("router")

BACKLOG = "leadrelay_outbox_backlog"


def activity(lead_id: str, n: int) -> CloudEvent[EventData]:
    data = LeadActivity(lead_id=lead_id, rep_id=f"rep-{n}", activity="contacted", occurred_at=utcnow())
    return new_event(data, source="test", event_id=f"{lead_id}-{n}")  # type: ignore[return-value]


def account(account_id: str) -> CloudEvent[EventData]:
    data = AccountChanged(account_id=account_id, name="Analytical Engines", changed_at=utcnow())
    return new_event(data, source="test", event_id=f"{account_id}-changed")  # type: ignore[return-value]


def make_relay(storage: Storage, kafka: Kafka, *, batch_size: int = 100, poll_interval: float = 0.05) -> OutboxRelay:
    metrics = ServiceMetrics(CollectorRegistry())
    return OutboxRelay(
        engine=storage.engine,
        sessions=storage.sessions,
        bus=KafkaBus(kafka.settings(), metrics),
        metrics=metrics,
        batch_size=batch_size,
        poll_interval=poll_interval,
    )


async def close(relay: OutboxRelay) -> None:
    await relay.stop(flush_timeout=2.0)
    await relay._bus.close()


async def write(storage: Storage, *events: CloudEvent[EventData]) -> None:
    async with storage.sessions() as session:
        outbox.add(session, *events)
        await session.commit()


async def test_rows_are_visible_only_after_commit(router_db: Storage) -> None:
    other_process = create_engine(router_db.url)  # a relay elsewhere, with its own connection
    try:
        async with router_db.sessions() as session:
            outbox.add(session, activity("lead-1", 1), activity("lead-1", 2))
            await session.flush()  # in the database, inside the open transaction
            assert await count_rows(other_process) == 0
            await session.commit()
        assert await count_rows(other_process) == 2
        assert await router_db.outbox_event_ids() == ["lead-1-1", "lead-1-2"]
    finally:
        await other_process.dispose()


async def count_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(text("SELECT count(*) FROM outbox"))).scalar_one())


async def test_rows_vanish_on_rollback(router_db: Storage) -> None:
    async with router_db.sessions() as session:
        outbox.add(session, activity("lead-1", 1))
        await session.flush()
        await session.rollback()
    assert await router_db.outbox_count() == 0


async def test_rows_staged_in_a_savepoint_that_rolls_back_are_dropped_with_it(router_db: Storage) -> None:
    async with router_db.sessions() as session:
        outbox.add(session, activity("lead-1", 1))
        savepoint = await session.begin_nested()
        outbox.add(session, activity("lead-1", 2))
        await savepoint.rollback()  # as a racing replica's winner makes the loser do
        async with session.begin_nested():
            outbox.add(session, activity("lead-1", 3))
            async with session.begin_nested():
                outbox.add(session, activity("lead-1", 4))
        outbox.add(session, activity("lead-1", 5))
        await session.commit()
    assert await router_db.outbox_event_ids() == ["lead-1-1", "lead-1-3", "lead-1-4", "lead-1-5"]


async def test_rows_staged_before_a_rollback_are_not_committed_later_by_the_same_session(
    router_db: Storage,
) -> None:
    async with router_db.sessions() as session:
        async with session.begin_nested():
            outbox.add(session, activity("lead-1", 1))  # released, then the whole transaction rolls back
        await session.rollback()
        outbox.add(session, activity("lead-1", 2))
        await session.commit()
        outbox.add(session, activity("lead-1", 3))
    async with router_db.sessions() as session:  # the first session closed without committing lead-1-3
        outbox.add(session, activity("lead-1", 4))
        await session.commit()
    assert await router_db.outbox_event_ids() == ["lead-1-2", "lead-1-4"]


async def test_rows_staged_in_turn_for_two_tables_are_one_statement_per_table(router_db: Storage) -> None:
    with recorded_statements(router_db.engine) as statements:
        async with router_db.sessions() as session:
            for n in range(3):  # as a batch of leads stages an outbox row and another row each, in turn
                outbox.add(session, activity("lead-1", n))
                stage_insert(session, ProcessedEvent, [new_row(ProcessedEvent, consumer="test", event_id=f"e-{n}")])
            await session.commit()

    inserted_into = [statement.split()[2] for statement in statements if statement.startswith("INSERT")]
    assert sorted(inserted_into) == ["outbox", "processed_event"]
    assert await router_db.outbox_event_ids() == ["lead-1-0", "lead-1-1", "lead-1-2"]


async def test_add_stores_what_the_relay_needs(router_db: Storage) -> None:
    event = account("acct-9")
    await write(router_db, event)
    async with router_db.sessions() as session:
        (row,) = (await session.exec(select(outbox.OutboxMessage))).all()
    assert (row.topic, row.key, row.event_id, row.event_type) == (
        "accounts.changed",
        "acct-9",
        event.id,
        "account.changed",
    )
    assert row.payload == event.to_bytes()


async def test_relay_publishes_in_order_with_headers_and_key_then_deletes(router_db: Storage, kafka: Kafka) -> None:
    # Three leads' events interleaved over several transactions, and one account event.
    events = [activity(f"lead-{lead}", n) for n in range(4) for lead in "abc"]
    for start in range(0, len(events), 5):
        await write(router_db, *events[start : start + 5])
    await write(router_db, account("acct-1"))
    relay = make_relay(router_db, kafka)
    try:
        assert await relay.backlog() == 13
        assert await relay.relay_pending() == 13
        assert await relay.relay_pending() == 0
        assert await router_db.outbox_count() == 0
        assert await relay.backlog() == 0
        assert metric(relay._metrics, BACKLOG) == 0
        assert metric(relay._metrics, "leadrelay_events_published_total", topic="leads.activity") == 12
    finally:
        await close(relay)

    records = await kafka.read(Topic.LEADS_ACTIVITY, 12)
    assert len(records) == 12
    assert await kafka.size(Topic.LEADS_ACTIVITY) == 12  # each row published once
    by_key: dict[str, list[str]] = defaultdict(list)
    partitions: dict[str, set[int]] = defaultdict(set)
    sent = {event.id: event for event in events}
    for record in records:
        headers = {name: value.decode() for name, value in record.headers}
        event = sent[headers["ce_id"]]
        assert headers["ce_type"] == "lead.activity"
        assert record.key == event.subject.encode()
        assert record.value == event.to_bytes()
        by_key[event.subject].append(event.id)
        partitions[event.subject].add(record.partition)
    # One lead's events stay on one partition, in the order they were written.
    assert dict(by_key) == {lead: [f"{lead}-{n}" for n in range(4)] for lead in ("lead-a", "lead-b", "lead-c")}
    assert all(len(used) == 1 for used in partitions.values())

    (account_record,) = await kafka.read(Topic.ACCOUNTS_CHANGED, 1)
    assert account_record.key == b"acct-1"
    assert dict(account_record.headers) == {"ce_id": b"acct-1-changed", "ce_type": b"account.changed"}


async def test_relay_publishes_in_batches_and_reports_the_backlog(router_db: Storage, kafka: Kafka) -> None:
    events = [activity("lead-x", n) for n in range(7)]
    await write(router_db, *events)
    relay = make_relay(router_db, kafka, batch_size=3)
    try:
        assert await relay.relay_pending() == 3
        assert await router_db.outbox_event_ids() == [f"lead-x-{n}" for n in range(3, 7)]
        assert metric(relay._metrics, BACKLOG) == 4
        assert await relay.relay_pending() == 3
        assert metric(relay._metrics, BACKLOG) == 1
        assert await relay.relay_pending() == 1
        assert metric(relay._metrics, BACKLOG) == 0
    finally:
        await close(relay)
    records = await kafka.read(Topic.LEADS_ACTIVITY, 7)
    assert await kafka.size(Topic.LEADS_ACTIVITY) == 7
    assert [dict(record.headers)["ce_id"].decode() for record in records] == [f"lead-x-{n}" for n in range(7)]


async def test_relay_with_broker_unreachable_raises_and_keeps_rows(router_db: Storage) -> None:
    await write(router_db, activity("lead-1", 1), activity("lead-1", 2))
    relay = make_relay(router_db, Kafka(f"127.0.0.1:{free_port()}"))
    try:
        with pytest.raises(KafkaError):
            await relay.relay_pending()
        assert await router_db.outbox_event_ids() == ["lead-1-1", "lead-1-2"]
        assert await relay.backlog() == 2
    finally:
        await close(relay)
    assert await router_db.outbox_count() == 2  # a failed flush at stop keeps them too


async def test_run_catches_up_when_the_broker_starts_later(
    router_db: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="leadrelay.outbox")
    port = free_port()
    events = [activity("lead-late", n) for n in range(5)]
    await write(router_db, *events)
    relay = make_relay(router_db, Kafka(f"127.0.0.1:{port}"), batch_size=2)
    task = asyncio.create_task(relay.run())
    broker = EmbeddedBroker(port)
    try:

        async def relay_failed() -> bool:
            return any(r.message == "outbox relay failed, will retry" for r in caplog.records)

        await wait_until(relay_failed, timeout=10, what="the relay to fail against the missing broker")
        assert await router_db.outbox_count() == 5

        await asyncio.to_thread(broker.start)
        records = await Kafka(broker.bootstrap_servers).read(Topic.LEADS_ACTIVITY, 5, timeout=20)
        assert [dict(record.headers)["ce_id"].decode() for record in records] == [event.id for event in events]

        async def drained() -> bool:
            return await router_db.outbox_count() == 0 and metric(relay._metrics, BACKLOG) == 0

        await wait_until(drained, timeout=10, what="the outbox to drain and the backlog gauge to read 0")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await close(relay)
        broker.stop()


async def test_run_reads_the_table_once_per_short_batch_and_waits_for_the_next_commit(
    router_db: Storage, kafka: Kafka
) -> None:
    # A batch shorter than the limit emptied the table as of its read: reading again at once would
    # find nothing (a transaction per wake-up for nothing); the next commit wakes the relay instead.
    relay = make_relay(router_db, kafka, poll_interval=60.0)  # only a commit can wake it within the test
    outbox.wake_on_commit(router_db.sessions, relay.wake)
    await write(router_db, activity("lead-1", 1), activity("lead-1", 2))
    task = asyncio.create_task(relay.run())
    try:
        with recorded_statements(router_db.engine) as statements:

            async def drained() -> bool:
                return await router_db.outbox_count() == 0

            await wait_until(drained, timeout=10, what="the first batch published")
            await write(router_db, activity("lead-1", 3))
            await wait_until(drained, timeout=10, what="the second batch published")
        # The relay's read: a SELECT (SQLite), or the DELETE ... RETURNING that takes rows (PostgreSQL).
        reads = [
            statement
            for statement in statements
            if "FROM outbox" in statement
            and "count(" not in statement
            and (statement.lstrip().upper().startswith("SELECT") or "RETURNING" in statement)
        ]
        assert len(reads) == 2  # one read per batch; no read that finds nothing in between
        assert await kafka.size(Topic.LEADS_ACTIVITY) == 3
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await close(relay)


async def test_backlog_gauge_counts_rows_waiting_during_a_broker_outage(
    router_db: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="leadrelay.outbox")
    await write(router_db, *(activity("lead-1", n) for n in range(3)))
    relay = make_relay(router_db, Kafka(f"127.0.0.1:{free_port()}"), poll_interval=0.01)
    task = asyncio.create_task(relay.run())
    try:

        async def failed_twice() -> bool:
            return sum(r.message == "outbox relay failed, will retry" for r in caplog.records) >= 2

        await wait_until(failed_twice, timeout=10, what="two failed relay attempts")
        assert metric(relay._metrics, BACKLOG) == 3
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await close(relay)


async def relay_lock_free(url: str) -> bool:
    """Whether another process could take the relay's lock right now."""
    engine = create_engine(url)
    lock = LeaderLock(engine, "outbox-relay")
    try:
        return await lock.try_acquire()
    finally:
        await lock.release()
        await engine.dispose()


async def test_one_relay_per_database_publishes(database_url: str, kafka: Kafka) -> None:
    # Processes sharing a database elect one relay, so one lead's events never interleave.
    async with migrated(database_url, ROUTER_MIGRATIONS) as storage:
        first, second = make_relay(storage, kafka), make_relay(storage, kafka)
        try:
            await write(storage, activity("lead-1", 1))
            assert await first.relay_pending() == 1
            assert not await relay_lock_free(database_url)
            await write(storage, activity("lead-1", 2))
            assert await second.relay_pending() == 0  # the first relay holds the lock
            assert await storage.outbox_event_ids() == ["lead-1-2"]
            assert await first.relay_pending() == 1
        finally:
            await close(first)
            await close(second)
    records = await kafka.read(Topic.LEADS_ACTIVITY, 2)
    assert [dict(record.headers)["ce_id"].decode() for record in records] == ["lead-1-1", "lead-1-2"]


async def test_stopped_relay_hands_the_lock_to_another(database_url: str, kafka: Kafka) -> None:
    async with migrated(database_url, ROUTER_MIGRATIONS) as storage:
        first, second = make_relay(storage, kafka, poll_interval=0.01), make_relay(storage, kafka, poll_interval=0.01)
        try:
            await write(storage, activity("lead-1", 1))
            assert await first.relay_pending() == 1
            await first.stop()  # a replica shutting down, or a relay giving up after a failure

            assert await relay_lock_free(database_url)
            await write(storage, activity("lead-1", 2))
            assert await second.relay_pending() == 1
        finally:
            await close(first)
            await close(second)
