"""EventConsumer against a real broker: at-least-once, idempotent, poison never blocks.

The handler under test writes an outbox row `effect-<event id>` in the consumer's transaction, so
what a handler committed is visible in the database.
"""

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from functools import partial
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy import func
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql.dml import Insert
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay import outbox
from leadrelay.consumer import Handlers
from leadrelay.consumer.loop import fetch_batch, offsets_to_commit
from leadrelay.db import DatabaseUnavailable
from leadrelay.events import (
    CloudEvent,
    LeadActivity,
    LeadAssigned,
    LeadReceived,
    LeadScored,
    SlaBreached,
    SlaStarted,
    Topic,
    dlq_topic,
    new_event,
    utcnow,
)
from leadrelay.idempotency import ProcessedEvent
from leadrelay.stages import LeadStage
from leadrelay.testing import PARTITIONS, ConsumerRunner, Kafka, RunningConsumer, Storage, wait_until

TOPIC = Topic.LEADS_SCORED.value
DLQ = dlq_topic(TOPIC)
CONSUMED = "leadrelay_events_consumed_total"
FAILED = "leadrelay_events_failed_total"
DEAD = "leadrelay_events_dead_lettered_total"


def scored(lead_id: str, event_id: str | None = None) -> CloudEvent[LeadScored]:
    lead = LeadReceived(lead_id=lead_id, email=f"{lead_id}@example.com", source="test", received_at=utcnow())
    data = LeadScored(
        lead_id=lead_id,
        score=80,
        stage=LeadStage.MQL,
        icp_version="icp-1",
        explanation=[],
        scored_at=utcnow(),
        lead=lead,
    )
    return new_event(data, source="scoring", event_id=event_id or f"scored-{lead_id}")


def message(event: CloudEvent[Any]) -> tuple[str, bytes, dict[str, str]]:
    return event.subject, event.to_bytes(), {"ce_id": event.id, "ce_type": event.type}


async def record_effect(event: CloudEvent[Any], session: AsyncSession) -> None:
    """The handler's visible effect: one outbox row per handled event, committed with the claim."""
    data = LeadAssigned(
        lead_id=event.subject,
        assignment_id=event.id,
        rep_id="rep-1",
        rule_path=["default"],
        candidates=["rep-1"],
        routing_version="routing-1",
        assigned_at=utcnow(),
    )
    outbox.add(session, new_event(data, source="test", event_id=f"effect-{event.id}"))


async def effects(storage: Storage) -> Counter[str]:
    """How many times each event's effect was committed."""
    return Counter(event_id.removeprefix("effect-") for event_id in await storage.outbox_event_ids())


async def wait_effects(storage: Storage, *event_ids: str, timeout: float = 20.0) -> Counter[str]:
    async def present() -> Counter[str] | None:
        found = await effects(storage)
        return found if all(found[event_id] for event_id in event_ids) else None

    return await wait_until(present, timeout=timeout, what=f"effects of {event_ids}")


def consumed(running: RunningConsumer, outcome: str, event_type: str = "lead.scored", topic: str = TOPIC) -> float:
    return running.value(CONSUMED, topic=topic, type=event_type, outcome=outcome)


async def processed_rows(storage: Storage) -> int:
    """Processed-event claims committed (the test consumers all share one group)."""
    async with storage.sessions() as session:
        count: int = (await session.exec(select(func.count()).select_from(ProcessedEvent))).one()
        return count


async def dead_lettered(running: RunningConsumer, count: int, topic: str = TOPIC) -> None:
    async def done() -> bool:
        return running.value(DEAD, topic=topic) >= count

    await wait_until(done, timeout=20, what=f"{count} dead letter(s) from {topic}")


class Calls:
    """Every handler call: the event ids it got and the session (so the transaction) it ran in."""

    def __init__(self) -> None:
        # The sessions are kept alive, so two distinct sessions can never share an identity.
        self.calls: list[tuple[list[str], AsyncSession]] = []

    def add(self, events: Sequence[CloudEvent[Any]], session: AsyncSession) -> None:
        self.calls.append(([event.id for event in events], session))

    def count(self) -> Counter[str]:
        """How many calls each event was passed to."""
        return Counter(event_id for event_ids, _ in self.calls for event_id in event_ids)

    def transactions(self) -> list[list[str]]:
        """Event ids handed to handlers, one list per session, sessions in the order they were first used."""
        sessions: list[AsyncSession] = []
        handled: list[list[str]] = []
        for event_ids, session in self.calls:
            index = next((n for n, seen in enumerate(sessions) if seen is session), None)
            if index is None:
                sessions.append(session)
                handled.append([])
                index = len(sessions) - 1
            handled[index].extend(event_ids)
        return handled


@contextmanager
def claims_made(storage: Storage) -> Iterator[list[list[str]]]:
    """Every INSERT into processed_event while inside, as the list of event ids each one tried to claim."""
    claims: list[list[str]] = []

    def before_execute(
        _connection: Connection,
        clause: Any,
        multiparams: list[dict[str, Any]],
        params: dict[str, Any],
        _options: Any,
    ) -> None:
        if isinstance(clause, Insert) and clause.table.name == ProcessedEvent.__tablename__:
            rows = multiparams or [params]  # SQLAlchemy passes a single row as `params`
            if "event_ids" in rows[0]:  # PostgreSQL: the batch's ids as one array
                claims.append(list(rows[0]["event_ids"]))
            else:
                claims.append([row["event_id"] for row in rows])

    sqlalchemy_event.listen(storage.engine.sync_engine, "before_execute", before_execute)
    try:
        yield claims
    finally:
        sqlalchemy_event.remove(storage.engine.sync_engine, "before_execute", before_execute)


async def test_handled_event_is_processed_once_and_committed(
    router_db: Storage, kafka: Kafka, consumers: ConsumerRunner
) -> None:
    first = scored("lead-1")
    await kafka.produce(TOPIC, message(first))
    run1 = await consumers.start(router_db, Handlers().on(LeadScored, record_effect))
    await wait_effects(router_db, first.id)
    await run1.stop()
    assert consumed(run1, "processed") == 1

    # The same group again: the committed offset means the first event is not delivered again.
    second = scored("lead-1", event_id="scored-lead-1-again")
    await kafka.produce(TOPIC, message(second))
    run2 = await consumers.start(router_db, Handlers().on(LeadScored, record_effect))
    await wait_effects(router_db, second.id)
    await run2.stop()

    assert consumed(run2, "processed") == 1
    assert consumed(run2, "duplicate") == 0
    assert await effects(router_db) == {first.id: 1, second.id: 1}


async def test_same_event_twice_has_effect_once(
    sqlite_router_db: Storage, kafka: Kafka, consumers: ConsumerRunner
) -> None:
    event = scored("lead-dup")
    await kafka.produce(TOPIC, message(event), message(event))
    running = await consumers.start(sqlite_router_db, Handlers().on(LeadScored, record_effect))

    async def both_seen() -> bool:
        return consumed(running, "processed") + consumed(running, "duplicate") >= 2

    await wait_until(both_seen, timeout=20, what="both deliveries to be consumed")
    await running.stop()
    assert consumed(running, "processed") == 1
    assert consumed(running, "duplicate") == 1
    assert await effects(sqlite_router_db) == {event.id: 1}


async def test_handler_failing_twice_then_succeeding_is_processed(
    sqlite_router_db: Storage, kafka: Kafka, consumers: ConsumerRunner
) -> None:
    attempts: Counter[str] = Counter()

    async def flaky(event: CloudEvent[Any], session: AsyncSession) -> None:
        attempts[event.id] += 1
        await record_effect(event, session)  # written, then rolled back by the failure
        if attempts[event.id] <= 2:
            raise RuntimeError("transient")

    event = scored("lead-flaky")
    await kafka.produce(TOPIC, message(event))
    running = await consumers.start(sqlite_router_db, Handlers().on(LeadScored, flaky), consumer_max_retries=3)
    await wait_effects(sqlite_router_db, event.id)
    await running.stop()

    assert attempts[event.id] == 3
    assert running.value(FAILED, topic=TOPIC, type="lead.scored") == 2
    assert consumed(running, "processed") == 1
    assert running.value(DEAD, topic=TOPIC) == 0
    assert await effects(sqlite_router_db) == {event.id: 1}
    assert await kafka.size(DLQ) == 0


async def test_database_outage_is_waited_out_not_dead_lettered(
    sqlite_router_db: Storage, kafka: Kafka, consumers: ConsumerRunner
) -> None:
    attempts: Counter[str] = Counter()

    async def database_down_for_a_while(event: CloudEvent[Any], session: AsyncSession) -> None:
        attempts[event.id] += 1
        if attempts[event.id] <= 4:  # more failures than the retry budget allows for poison
            raise OperationalError("SELECT 1", {}, ConnectionRefusedError("database restarting"))
        await record_effect(event, session)

    event = scored("lead-db-outage")
    await kafka.produce(TOPIC, message(event))
    running = await consumers.start(
        sqlite_router_db,
        Handlers().on(LeadScored, database_down_for_a_while),
        consumer_max_retries=1,
        kafka_connect_backoff_max_seconds=0.05,
    )
    await wait_effects(sqlite_router_db, event.id)
    await running.stop()

    assert attempts[event.id] == 5
    assert running.value(DEAD, topic=TOPIC) == 0
    assert await kafka.size(DLQ) == 0
    assert await effects(sqlite_router_db) == {event.id: 1}


async def test_handler_that_always_fails_is_dead_lettered_and_the_next_record_processed(
    sqlite_router_db: Storage, kafka: Kafka, consumers: ConsumerRunner
) -> None:
    poison, good = scored("lead-poison"), scored("lead-poison", event_id="scored-after-poison")

    async def poisoned(event: CloudEvent[Any], session: AsyncSession) -> None:
        await record_effect(event, session)
        if event.id == poison.id:
            raise ValueError("cannot route this lead")

    # Same key, so the good record sits behind the poison on the same partition.
    poison_meta, good_meta = await kafka.produce(TOPIC, message(poison), message(good))
    assert poison_meta.partition == good_meta.partition

    running = await consumers.start(sqlite_router_db, Handlers().on(LeadScored, poisoned), consumer_max_retries=2)
    await wait_effects(sqlite_router_db, good.id)
    await running.stop()

    (dead,) = await kafka.read(DLQ, 1)
    headers = {name: value.decode() for name, value in dead.headers}
    assert dead.value == poison.to_bytes()
    assert dead.key == b"lead-poison"
    assert headers["dlq_error_type"] == "ValueError"
    assert "cannot route this lead" in headers["dlq_error_message"]
    assert headers["dlq_attempts"] == "3"  # consumer_max_retries + 1
    assert headers["dlq_original_topic"] == TOPIC
    assert headers["dlq_original_partition"] == str(poison_meta.partition)
    assert headers["dlq_original_offset"] == str(poison_meta.offset)
    assert headers["dlq_consumer_group"] == "leadrelay-test"
    assert headers["ce_id"] == poison.id  # the original headers travel along
    assert running.value(FAILED, topic=TOPIC, type="lead.scored") == 3
    assert running.value(DEAD, topic=TOPIC) == 1
    assert consumed(running, "processed") == 1
    # The failed attempts' writes were rolled back; only the good record left an effect.
    assert await effects(sqlite_router_db) == {good.id: 1}
    assert await kafka.size(DLQ) == 1


async def test_unreadable_records_go_straight_to_the_dlq(
    sqlite_router_db: Storage, kafka: Kafka, consumers: ConsumerRunner
) -> None:
    handled: list[str] = []

    async def handler(event: CloudEvent[Any], session: AsyncSession) -> None:
        handled.append(event.id)
        await record_effect(event, session)

    bad_payload = json.loads(scored("lead-bad").to_bytes())
    bad_payload["data"]["score"] = 1000  # a type we handle, with a payload that can never validate
    sentinel = scored("lead-bad", event_id="sentinel")
    garbage_meta, _, _ = await kafka.produce(
        TOPIC,
        ("lead-bad", b"{not json"),
        ("lead-bad", json.dumps(bad_payload).encode()),
        message(sentinel),
    )
    running = await consumers.start(sqlite_router_db, Handlers().on(LeadScored, handler), consumer_max_retries=3)
    await wait_effects(sqlite_router_db, sentinel.id)
    await running.stop()

    dead = await kafka.read(DLQ, 2)
    by_offset = {int(dict(r.headers)["dlq_original_offset"]): {k: v.decode() for k, v in r.headers} for r in dead}
    assert sorted(by_offset) == [garbage_meta.offset, garbage_meta.offset + 1]
    assert all(h["dlq_attempts"] == "1" and h["dlq_error_type"] == "ValidationError" for h in by_offset.values())
    assert {r.value for r in dead} == {b"{not json", json.dumps(bad_payload).encode()}
    assert handled == [sentinel.id]
    assert running.value(FAILED, topic=TOPIC, type="lead.scored") == 0
    assert running.value(DEAD, topic=TOPIC) == 2
    assert await kafka.size(DLQ) == 2


async def test_event_of_a_type_not_handled_is_ignored(
    sqlite_router_db: Storage, kafka: Kafka, consumers: ConsumerRunner
) -> None:
    activity = new_event(
        LeadActivity(lead_id="lead-i", rep_id="rep-1", activity="contacted", occurred_at=utcnow()), source="intake"
    )
    unknown = json.loads(activity.to_bytes())
    unknown["type"], unknown["id"] = "lead.teleported", "unknown-1"
    sentinel = scored("lead-i", event_id="sentinel")
    await kafka.produce(TOPIC, message(activity), ("lead-i", json.dumps(unknown).encode()), message(sentinel))
    running = await consumers.start(sqlite_router_db, Handlers().on(LeadScored, record_effect))
    await wait_effects(sqlite_router_db, sentinel.id)
    await running.stop()

    assert running.value(CONSUMED, topic=TOPIC, type="other", outcome="ignored") == 2
    assert running.value(DEAD, topic=TOPIC) == 0
    assert await effects(sqlite_router_db) == {sentinel.id: 1}
    assert await kafka.size(DLQ) == 0


async def test_the_ce_type_header_skips_unhandled_types_unread_and_the_envelope_has_the_last_word(
    sqlite_router_db: Storage, kafka: Kafka, consumers: ConsumerRunner
) -> None:
    activity = new_event(
        LeadActivity(lead_id="lead-h", rep_id="rep-1", activity="contacted", occurred_at=utcnow()), source="intake"
    )
    mislabelled = scored("lead-h", event_id="mislabelled")
    sentinel = scored("lead-h", event_id="sentinel")
    await kafka.produce(
        TOPIC,
        # Declared a type this consumer does not handle: skipped without reading the body.
        ("lead-h", b"{not json", {"ce_id": "x", "ce_type": "lead.activity"}),
        # Declared lead.scored, but the envelope says lead.activity: the envelope decides.
        ("lead-h", activity.to_bytes(), {"ce_id": activity.id, "ce_type": "lead.scored"}),
        # Declared lead.activity, but the envelope is a lead.scored: the header decides; it is skipped.
        ("lead-h", mislabelled.to_bytes(), {"ce_id": mislabelled.id, "ce_type": "lead.activity"}),
        message(sentinel),
    )
    running = await consumers.start(sqlite_router_db, Handlers().on(LeadScored, record_effect))
    await wait_effects(sqlite_router_db, sentinel.id)
    await running.stop()

    assert await effects(sqlite_router_db) == {sentinel.id: 1}
    assert running.value(CONSUMED, topic=TOPIC, type="other", outcome="ignored") == 3
    assert running.value(DEAD, topic=TOPIC) == 0
    assert await kafka.size(DLQ) == 0


async def test_stop_mid_stream_then_restart_handles_each_event_exactly_once(
    sqlite_router_db: Storage, kafka: Kafka, consumers: ConsumerRunner
) -> None:
    events = [scored("lead-stream", event_id=f"stream-{n:02d}") for n in range(15)]
    stop_at, batch_size = 5, 5
    reached, release = asyncio.Event(), asyncio.Event()

    async def handler(event: CloudEvent[Any], session: AsyncSession) -> None:
        await record_effect(event, session)
        if event.id == events[stop_at].id and not reached.is_set():
            reached.set()
            await release.wait()  # stop() arrives while this event's batch is in hand

    await kafka.produce(TOPIC, *(message(event) for event in events))  # one key: one partition, in order
    run1 = await consumers.start(sqlite_router_db, Handlers().on(LeadScored, handler), consumer_batch_size=batch_size)

    async def in_hand() -> bool:
        return reached.is_set()

    await wait_until(in_hand, timeout=20, what=f"event {stop_at} to be in the handler")
    run1.consumer.stop()
    release.set()
    await run1.stop()

    # The batch in hand is finished and committed as a whole; no batch after it was started.
    handled = int(consumed(run1, "processed"))
    assert stop_at < handled <= stop_at + batch_size
    assert set(await effects(sqlite_router_db)) == {event.id for event in events[:handled]}

    run2 = await consumers.start(sqlite_router_db, Handlers().on(LeadScored, record_effect))
    await wait_effects(sqlite_router_db, *(event.id for event in events))
    await run2.stop()

    assert await effects(sqlite_router_db) == {event.id: 1 for event in events}
    # Every handled record's offset was committed at stop: the restart saw no duplicates.
    assert consumed(run2, "processed") == len(events) - handled
    assert consumed(run2, "duplicate") == 0


async def committed_records(kafka: Kafka, group: str, topic: str = TOPIC) -> int:
    """How many of the topic's records the group has committed, over all its partitions."""
    reader = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, group_id=group, enable_auto_commit=False)
    await reader.start()
    try:
        partitions = reader.partitions_for_topic(topic) or set(range(PARTITIONS))
        offsets = [await reader.committed(TopicPartition(topic, partition)) for partition in partitions]
        return sum(offset or 0 for offset in offsets)
    finally:
        await reader.stop()


async def test_a_trickle_of_records_is_committed_together_once_per_interval_and_at_stop(
    sqlite_router_db: Storage, kafka: Kafka, consumers: ConsumerRunner
) -> None:
    """One-record batches do not each pay an offset commit; nothing handled is left uncommitted at stop."""
    running = await consumers.start(
        sqlite_router_db, Handlers().on(LeadScored, record_effect), consumer_commit_interval_seconds=120
    )
    group = running.consumer.name
    first, *later = [scored(f"lead-trickle-{n}") for n in range(4)]
    await kafka.produce(TOPIC, message(first))
    await wait_effects(sqlite_router_db, first.id)

    async def first_committed() -> bool:
        return await committed_records(kafka, group) == 1

    # The first batch after a quiet spell is committed at once...
    await wait_until(first_committed, timeout=20, what="the first record's offset to be committed")
    for event in later:  # ...and the batches that follow it within the interval wait for the next commit.
        await kafka.produce(TOPIC, message(event))
        await wait_effects(sqlite_router_db, event.id)
    assert await committed_records(kafka, group) == 1

    await running.stop()
    assert await committed_records(kafka, group) == 4
    assert await effects(sqlite_router_db) == {event.id: 1 for event in [first, *later]}


async def test_offsets_held_back_are_committed_by_an_idle_consumer_once_the_interval_passed(
    sqlite_router_db: Storage, kafka: Kafka, consumers: ConsumerRunner
) -> None:
    running = await consumers.start(
        sqlite_router_db, Handlers().on(LeadScored, record_effect), consumer_commit_interval_seconds=1
    )
    events = [scored(f"lead-idle-{n}") for n in range(3)]
    for event in events:
        await kafka.produce(TOPIC, message(event))
        await wait_effects(sqlite_router_db, event.id)

    async def all_committed() -> bool:
        return await committed_records(kafka, running.consumer.name) == len(events)

    await wait_until(all_committed, timeout=20, what="the held-back offsets to be committed")
    assert not running.task.done()  # committed by the running loop, not at stop


async def test_stop_during_retry_backoff_leaves_the_event_for_redelivery(
    sqlite_router_db: Storage, kafka: Kafka, consumers: ConsumerRunner
) -> None:
    poisoned = {"on": True}
    attempts: Counter[str] = Counter()

    async def handler(event: CloudEvent[Any], session: AsyncSession) -> None:
        attempts[event.id] += 1
        if poisoned["on"]:
            # Not a database outage (only DatabaseUnavailable is): this counts toward dead-lettering.
            raise ConnectionError("dependency restarting")
        await record_effect(event, session)

    event = scored("lead-retry")
    await kafka.produce(TOPIC, message(event))
    run1 = await consumers.start(
        sqlite_router_db, Handlers().on(LeadScored, handler), consumer_max_retries=3, consumer_retry_backoff_seconds=30
    )

    async def failed_once() -> bool:
        return run1.value(FAILED, topic=TOPIC, type="lead.scored") >= 1

    await wait_until(failed_once, timeout=20, what="the first failed attempt")
    await run1.stop(timeout=10)  # arrives during the 30 s backoff before the second attempt

    assert attempts[event.id] == 1  # the poison path: one failed attempt, then the backoff
    assert run1.value(FAILED, topic=TOPIC, type="lead.scored") == 1
    assert run1.value(DEAD, topic=TOPIC) == 0
    assert consumed(run1, "processed") == 0
    assert await kafka.size(DLQ) == 0
    assert await processed_rows(sqlite_router_db) == 0

    poisoned["on"] = False
    run2 = await consumers.start(sqlite_router_db, Handlers().on(LeadScored, handler))
    await wait_effects(sqlite_router_db, event.id)
    await run2.stop()
    assert consumed(run2, "processed") == 1  # redelivered: its offset was not committed
    assert attempts[event.id] == 2
    assert await effects(sqlite_router_db) == {event.id: 1}
    assert await kafka.size(DLQ) == 0


SLA = Topic.SLA_EVENTS.value


def sla_started(lead_id: str, event_id: str) -> CloudEvent[SlaStarted]:
    now = utcnow()
    data = SlaStarted(
        lead_id=lead_id,
        obligation="first_response",
        assignment_id=f"assignment-{lead_id}",
        rep_id="rep-1",
        policy_version="sla-1",
        started_at=now,
        due_at=now + timedelta(minutes=5),
    )
    return new_event(data, source="sla-monitor", event_id=event_id)


def sla_breached(lead_id: str, event_id: str) -> CloudEvent[SlaBreached]:
    now = utcnow()
    data = SlaBreached(
        lead_id=lead_id,
        obligation="first_response",
        assignment_id=f"assignment-{lead_id}",
        rep_id="rep-1",
        due_at=now,
        breached_at=now,
    )
    return new_event(data, source="sla-monitor", event_id=event_id)


# Keys the default partitioner puts on partitions 1, 2 and 0 of a three-partition topic.
THREE_PARTITIONS = ("lead-a", "lead-b", "lead-x")


async def test_a_fetch_is_handled_in_one_transaction_with_bulk_claims(
    router_db: Storage, kafka: Kafka, consumers: ConsumerRunner
) -> None:
    events = [scored(THREE_PARTITIONS[n % 3], event_id=f"bulk-{n:02d}") for n in range(21)]
    sent = await kafka.produce(TOPIC, *(message(event) for event in events))
    assert len({meta.partition for meta in sent}) == 3
    calls = Calls()

    async def handler(event: CloudEvent[LeadScored], session: AsyncSession) -> None:
        calls.add([event], session)
        await record_effect(event, session)

    with claims_made(router_db) as claims:
        running = await consumers.start(router_db, Handlers().on(LeadScored, handler))
        await wait_effects(router_db, *(event.id for event in events))
        await running.stop()

    # All 21 records were in the broker before the consumer joined: one fetch, one transaction.
    transactions = calls.transactions()
    assert len(transactions) == 1
    assert sorted(transactions[0]) == sorted(event.id for event in events)
    # One multi-row claim per transaction, of exactly the events that transaction handled, in order.
    assert claims == transactions
    assert await processed_rows(router_db) == len(events)
    assert consumed(running, "processed") == len(events)
    assert await effects(router_db) == {event.id: 1 for event in events}


@pytest.mark.parametrize("keys", [("lead-a",) * 3, THREE_PARTITIONS], ids=["one-partition", "three-partitions"])
async def test_a_poison_record_in_a_fetch_does_not_fail_its_neighbours(
    keys: tuple[str, str, str], sqlite_router_db: Storage, kafka: Kafka, consumers: ConsumerRunner
) -> None:
    before, poison, after = (
        scored(key, event_id=f"{role}-{key}") for role, key in zip(("a", "b", "c"), keys, strict=True)
    )
    calls = Calls()

    async def handler(event: CloudEvent[LeadScored], session: AsyncSession) -> None:
        calls.add([event], session)
        await record_effect(event, session)  # rolled back with the batch, and with each failed attempt
        if event.id == poison.id:
            raise ValueError("cannot route this lead")

    sent = await kafka.produce(TOPIC, message(before), message(poison), message(after))
    assert len({meta.partition for meta in sent}) == len(set(keys))
    retries = 2
    with claims_made(sqlite_router_db) as claims:
        run1 = await consumers.start(sqlite_router_db, Handlers().on(LeadScored, handler), consumer_max_retries=retries)
        await wait_effects(sqlite_router_db, before.id, after.id)
        await dead_lettered(run1, 1)
        await run1.stop()

    # First the whole fetch in one transaction, with one claim of all three; it failed and was rolled back.
    batch_order = claims[0]
    assert sorted(batch_order) == sorted([before.id, poison.id, after.id])
    in_batch = batch_order[: batch_order.index(poison.id) + 1]  # the handler ran up to the poison
    assert calls.transactions()[0] == in_batch
    # Then each record alone: the neighbours once, the poison until its attempts ran out.
    assert all(len(claim) == 1 for claim in claims[1:])
    alone = Counter({before.id: 1, after.id: 1, poison.id: retries + 1})
    assert Counter(event_id for (event_id,) in claims[1:]) == alone
    assert calls.count() == Counter(in_batch) + alone

    (dead,) = await kafka.read(DLQ, 1)
    headers = {name: value.decode() for name, value in dead.headers}
    assert dead.value == poison.to_bytes()
    assert headers["dlq_attempts"] == str(retries + 1)
    assert headers["dlq_error_type"] == "ValueError"
    assert run1.value(FAILED, topic=TOPIC, type="lead.scored") == retries + 1
    assert run1.value(DEAD, topic=TOPIC) == 1
    assert consumed(run1, "processed") == 2
    assert await effects(sqlite_router_db) == {before.id: 1, after.id: 1}
    assert await processed_rows(sqlite_router_db) == 2

    # Offsets were committed: the same group, restarted, handles only what came after.
    sentinels = [scored(key, event_id=f"sentinel-{n}") for n, key in enumerate(keys)]  # behind each record
    await kafka.produce(TOPIC, *(message(sentinel) for sentinel in sentinels))
    handled_before_restart = len(calls.calls)
    run2 = await consumers.start(sqlite_router_db, Handlers().on(LeadScored, handler), consumer_max_retries=retries)
    await wait_effects(sqlite_router_db, *(sentinel.id for sentinel in sentinels))
    await run2.stop()

    assert sorted(event_id for ids, _ in calls.calls[handled_before_restart:] for event_id in ids) == sorted(
        sentinel.id for sentinel in sentinels
    )
    assert consumed(run2, "processed") == len(sentinels)
    assert consumed(run2, "duplicate") == 0
    assert run2.value(FAILED, topic=TOPIC, type="lead.scored") == 0
    assert await kafka.size(DLQ) == 1


async def test_each_keys_events_are_handled_in_produce_order_also_when_isolated(
    sqlite_router_db: Storage, kafka: Kafka, consumers: ConsumerRunner
) -> None:
    keys = THREE_PARTITIONS[:2]
    events = [scored(keys[n % 2], event_id=f"order-{keys[n % 2]}-{n // 2:02d}") for n in range(30)]
    flaky, poison = events[10], events[17]  # one of each key
    assert flaky.subject != poison.subject
    calls = Calls()

    async def handler(event: CloudEvent[LeadScored], session: AsyncSession) -> None:
        calls.add([event], session)
        await record_effect(event, session)
        if event.id == poison.id or (event.id == flaky.id and calls.count()[flaky.id] == 1):
            raise ValueError("cannot route this lead")

    await kafka.produce(TOPIC, *(message(event) for event in events))
    running = await consumers.start(sqlite_router_db, Handlers().on(LeadScored, handler), consumer_max_retries=1)
    await wait_effects(sqlite_router_db, *(event.id for event in events if event is not poison))
    await dead_lettered(running, 1)
    await running.stop()

    # The fetch was tried as one transaction, which failed; then every record was handled alone.
    first_transaction = calls.transactions()[0]
    assert len(first_transaction) > 1
    assert calls.count()[flaky.id] == 2
    committed = [event_id.removeprefix("effect-") for event_id in await sqlite_router_db.outbox_event_ids()]
    for key in keys:
        produced = [event.id for event in events if event.subject == key]
        assert [event_id for event_id in committed if event_id in produced] == [
            event_id for event_id in produced if event_id != poison.id
        ], key
        # The handler saw the key's events in produce order in the batch, and again when isolated.
        attempts = [ids[0] for ids, _ in calls.calls if ids[0] in produced]
        in_batch = [event_id for event_id in first_transaction if event_id in produced]
        assert attempts[: len(in_batch)] == in_batch == produced[: len(in_batch)], key
        isolated = attempts[len(in_batch) :]
        assert [event_id for n, event_id in enumerate(isolated) if n == 0 or isolated[n - 1] != event_id] == produced
    assert Counter(committed) == {event.id: 1 for event in events if event is not poison}
    assert running.value(DEAD, topic=TOPIC) == 1


async def test_a_batch_handler_gets_consecutive_events_of_its_type_in_runs(
    sqlite_router_db: Storage, kafka: Kafka, consumers: ConsumerRunner
) -> None:
    s1, s2, s3 = (sla_started("lead-a", f"started-{n}") for n in (1, 2, 3))
    breach = sla_breached("lead-a", "breached-1")
    s4, s5 = (sla_started("lead-a", f"started-{n}") for n in (4, 5))
    runs: list[list[str]] = []
    calls = Calls()

    async def on_started(events: Sequence[CloudEvent[SlaStarted]], session: AsyncSession) -> None:
        runs.append([event.id for event in events])
        calls.add(events, session)
        for event in events:
            await record_effect(event, session)

    async def on_breached(event: CloudEvent[SlaBreached], session: AsyncSession) -> None:
        calls.add([event], session)
        await record_effect(event, session)

    records: list[CloudEvent[Any]] = [s1, s2, s3, breach, s4, s5]
    await kafka.produce(SLA, *(message(event) for event in records))  # one key: one partition, in order
    handlers = Handlers().on_batch(SlaStarted, on_started).on(SlaBreached, on_breached)
    running = await consumers.start(sqlite_router_db, handlers)
    await wait_effects(sqlite_router_db, *(event.id for event in records))
    await running.stop()

    # One fetch, one transaction; the run of started events is cut by the breach between them.
    assert calls.transactions() == [[event.id for event in records]]
    assert runs == [[s1.id, s2.id, s3.id], [s4.id, s5.id]]
    assert consumed(running, "processed", "sla.started", SLA) == 5
    assert consumed(running, "processed", "sla.breached", SLA) == 1
    assert await effects(sqlite_router_db) == {event.id: 1 for event in records}


async def test_a_failing_batch_handler_falls_back_to_one_record_at_a_time(
    sqlite_router_db: Storage, kafka: Kafka, consumers: ConsumerRunner
) -> None:
    s1, s2, poison = (sla_started("lead-a", f"started-{n}") for n in (1, 2, 3))
    breach = sla_breached("lead-a", "breached-1")
    s4, s5 = (sla_started("lead-a", f"started-{n}") for n in (4, 5))
    runs: list[list[str]] = []
    breaches: list[str] = []

    async def on_started(events: Sequence[CloudEvent[SlaStarted]], session: AsyncSession) -> None:
        runs.append([event.id for event in events])
        for event in events:
            await record_effect(event, session)
        if poison.id in {event.id for event in events}:
            raise ValueError("no timer for this assignment")

    async def on_breached(event: CloudEvent[SlaBreached], session: AsyncSession) -> None:
        breaches.append(event.id)
        await record_effect(event, session)

    records: list[CloudEvent[Any]] = [s1, s2, poison, breach, s4, s5]
    await kafka.produce(SLA, *(message(event) for event in records))
    retries = 2
    handlers = Handlers().on_batch(SlaStarted, on_started).on(SlaBreached, on_breached)
    running = await consumers.start(sqlite_router_db, handlers, consumer_max_retries=retries)
    await wait_effects(sqlite_router_db, s1.id, s2.id, breach.id, s4.id, s5.id)
    await dead_lettered(running, 1, SLA)
    await running.stop()

    # The first run failed the whole fetch; then every record went alone, the poison until it ran out.
    assert runs == [[s1.id, s2.id, poison.id], [s1.id], [s2.id], *[[poison.id]] * (retries + 1), [s4.id], [s5.id]]
    assert breaches == [breach.id]  # never reached in the failed batch
    (dead,) = await kafka.read(dlq_topic(SLA), 1)
    assert dead.value == poison.to_bytes()
    assert dict(dead.headers)["dlq_attempts"] == str(retries + 1).encode()
    assert running.value(FAILED, topic=SLA, type="sla.started") == retries + 1
    assert await effects(sqlite_router_db) == {event.id: 1 for event in (s1, s2, breach, s4, s5)}


@pytest.mark.parametrize("count", [1, 3], ids=["alone", "in-a-batch"])
async def test_stop_during_a_database_outage_leaves_the_events_for_redelivery(
    count: int, sqlite_router_db: Storage, kafka: Kafka, consumers: ConsumerRunner
) -> None:
    down = {"on": True}
    attempts: Counter[str] = Counter()

    async def handler(event: CloudEvent[LeadScored], session: AsyncSession) -> None:
        attempts[event.id] += 1
        if down["on"]:
            raise DatabaseUnavailable("database restarting")
        await record_effect(event, session)

    events = [scored("lead-outage", event_id=f"outage-{n}") for n in range(count)]
    await kafka.produce(TOPIC, *(message(event) for event in events))
    run1 = await consumers.start(
        sqlite_router_db,
        Handlers().on(LeadScored, handler),
        consumer_max_retries=0,  # were the outage counted as a failure, the first one would dead-letter
        kafka_connect_backoff_max_seconds=30,  # the wait between tries while the database is down
    )

    async def tried() -> bool:
        return sum(attempts.values()) >= 1

    await wait_until(tried, timeout=20, what="the first attempt")
    await run1.stop(timeout=10)  # arrives during the 30 s wait for the database

    assert sum(attempts.values()) == 1
    assert run1.value(DEAD, topic=TOPIC) == 0
    assert consumed(run1, "processed") == 0
    assert await kafka.size(DLQ) == 0
    assert await processed_rows(sqlite_router_db) == 0

    down["on"] = False
    run2 = await consumers.start(sqlite_router_db, Handlers().on(LeadScored, handler))
    await wait_effects(sqlite_router_db, *(event.id for event in events))
    await run2.stop()
    assert consumed(run2, "processed") == count  # none was committed before the stop
    assert consumed(run2, "duplicate") == 0
    assert await effects(sqlite_router_db) == {event.id: 1 for event in events}
    assert await kafka.size(DLQ) == 0


@pytest.mark.parametrize("with_poison", [False, True], ids=["clean-fetch", "fetch-with-poison"])
async def test_the_same_event_twice_in_one_fetch_has_one_effect(
    with_poison: bool, sqlite_router_db: Storage, kafka: Kafka, consumers: ConsumerRunner
) -> None:
    twice, after = scored("lead-twice", event_id="twice"), scored("lead-twice", event_id="after-twice")
    poison = scored("lead-twice", event_id="poison")
    records = [twice, twice, after, *([poison] if with_poison else [])]
    calls = Calls()

    async def handler(event: CloudEvent[LeadScored], session: AsyncSession) -> None:
        calls.add([event], session)
        await record_effect(event, session)
        if event.id == poison.id:
            raise ValueError("cannot route this lead")

    await kafka.produce(TOPIC, *(message(event) for event in records))
    with claims_made(sqlite_router_db) as claims:
        running = await consumers.start(sqlite_router_db, Handlers().on(LeadScored, handler), consumer_max_retries=0)
        await wait_effects(sqlite_router_db, twice.id, after.id)
        if with_poison:
            await dead_lettered(running, 1)
        await running.stop()

    # Both copies were in the one fetch (the first and the last record shared a transaction),
    # and the batch claimed the event once.
    assert calls.transactions()[0] == [twice.id, after.id, *([poison.id] if with_poison else [])]
    assert claims[0] == [twice.id, after.id, *([poison.id] if with_poison else [])]
    if with_poison:  # one record at a time after the batch failed: the second copy's claim inserts nothing
        assert claims[1:] == [[twice.id], [twice.id], [after.id], [poison.id]]
        assert calls.count() == {twice.id: 2, after.id: 2, poison.id: 2}
    else:
        assert claims[1:] == []
        assert calls.count() == {twice.id: 1, after.id: 1}
    assert consumed(running, "processed") == 2
    assert consumed(running, "duplicate") == 1
    assert await effects(sqlite_router_db) == {twice.id: 1, after.id: 1}
    assert await processed_rows(sqlite_router_db) == 2


async def test_a_lingering_consumer_handles_a_trickle_in_one_transaction_once_the_batch_is_full(
    sqlite_router_db: Storage, kafka: Kafka, consumers: ConsumerRunner
) -> None:
    """Records produced one at a time share a transaction; a full batch does not wait out the linger."""
    calls = Calls()

    async def handler(event: CloudEvent[LeadScored], session: AsyncSession) -> None:
        calls.add([event], session)
        await record_effect(event, session)

    running = await consumers.start(
        sqlite_router_db, Handlers().on(LeadScored, handler), consumer_linger_ms=60_000, consumer_batch_size=3
    )
    joined = [scored(f"lead-joined-{n}") for n in range(3)]
    await kafka.produce(TOPIC, *(message(event) for event in joined))  # a full batch: handled once fetched
    await wait_effects(sqlite_router_db, *(event.id for event in joined), timeout=20)

    trickle = [scored(f"lead-trickle-{n}") for n in range(3)]
    for event in trickle:  # each acknowledged before the next is sent, to a consumer already polling
        await kafka.produce(TOPIC, message(event))
    await wait_effects(sqlite_router_db, *(event.id for event in trickle), timeout=20)  # well within the 60 s

    assert [sorted(handled) for handled in calls.transactions()[1:]] == [sorted(event.id for event in trickle)]
    await running.stop()
    assert await committed_records(kafka, running.consumer.name) == len(joined) + len(trickle)


async def test_a_lingering_consumer_handles_a_lone_record_once_the_linger_passed(
    sqlite_router_db: Storage, kafka: Kafka, consumers: ConsumerRunner
) -> None:
    await consumers.start(sqlite_router_db, Handlers().on(LeadScored, record_effect), consumer_linger_ms=1_500)
    joined = scored("lead-joined")
    await kafka.produce(TOPIC, message(joined))
    await wait_effects(sqlite_router_db, joined.id, timeout=20)  # the consumer is in its group and polling

    event = scored("lead-alone")
    sent_at = asyncio.get_running_loop().time()
    await kafka.produce(TOPIC, message(event))
    await wait_effects(sqlite_router_db, event.id, timeout=20)

    # The fetch that returned the record came after it was sent, and the linger starts there.
    assert asyncio.get_running_loop().time() - sent_at >= 1.5


class ScriptedPolls:
    """Stands in for AIOKafkaConsumer.getmany: each poll returns the next scripted records, then nothing."""

    def __init__(self, *polls: list[str]) -> None:
        self.polls = [list(poll) for poll in polls]
        self.asked: list[tuple[int, int]] = []  # (timeout_ms, max_records) of every poll

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[str, list[str]]:
        self.asked.append((timeout_ms, max_records))
        if not self.polls:
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        poll = self.polls[0]
        taken, self.polls[0] = poll[:max_records], poll[max_records:]  # the rest waits for the next poll
        if not self.polls[0]:
            self.polls.pop(0)
        return {"partition": taken}


def never() -> bool:
    return False


async def fetch(
    polls: ScriptedPolls, *, linger_seconds: float, max_records: int = 10, cut_short: Callable[[], bool] = never
) -> list[Any]:
    consumer: Any = polls  # fetch_batch only polls
    return await fetch_batch(consumer, max_records=max_records, linger_seconds=linger_seconds, cut_short=cut_short)


async def test_without_a_linger_a_batch_is_what_one_poll_returned() -> None:
    polls = ScriptedPolls(["a"], ["b"])
    assert await fetch(polls, linger_seconds=0) == ["a"]
    assert len(polls.asked) == 1


async def test_an_empty_poll_does_not_linger() -> None:
    polls = ScriptedPolls()
    assert await fetch(polls, linger_seconds=60) == []
    assert len(polls.asked) == 1


async def test_a_linger_gathers_later_polls_until_the_batch_is_full() -> None:
    polls = ScriptedPolls(["a"], ["b", "c"], ["d", "e"])
    assert await fetch(polls, linger_seconds=60, max_records=4) == ["a", "b", "c", "d"]  # not 60 s later
    assert [max_records for _, max_records in polls.asked] == [4, 3, 1]
    assert polls.polls == [["e"]]  # left for the next batch


async def test_a_linger_ends_when_its_time_is_up_with_what_arrived() -> None:
    polls = ScriptedPolls(["a"], ["b"])
    started = asyncio.get_running_loop().time()
    assert await fetch(polls, linger_seconds=0.5) == ["a", "b"]
    assert asyncio.get_running_loop().time() - started >= 0.5
    assert all(timeout_ms <= 200 for timeout_ms, _ in polls.asked)  # a stop is seen within a poll


async def test_a_stop_ends_the_linger_with_the_records_in_hand() -> None:
    polls = ScriptedPolls(["a"], ["b"])
    assert await fetch(polls, linger_seconds=60, cut_short=lambda: len(polls.asked) >= 2) == ["a", "b"]
    assert len(polls.asked) == 2


def test_offsets_are_committed_only_for_partitions_still_assigned() -> None:
    """Records in hand when a rebalance revoked their partition are handled, but their offsets are the new owner's."""
    handled: list[Any] = [
        SimpleNamespace(topic=TOPIC, partition=partition, offset=offset)
        for partition, offset in [(0, 5), (1, 3), (0, 6), (2, 9), (1, 4)]
    ]
    assigned = {TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)}

    assert offsets_to_commit(handled, assigned=assigned) == {TopicPartition(TOPIC, 0): 7, TopicPartition(TOPIC, 1): 5}
    assert offsets_to_commit(handled, assigned=set()) == {}


async def takes_activity(event: CloudEvent[LeadActivity], session: AsyncSession) -> None:
    """A handler for lead.activity."""


async def takes_activity_with_option(event: CloudEvent[LeadActivity], session: AsyncSession, *, option: int) -> None:
    """A handler for lead.activity with a setting bound by functools.partial, as services do."""


async def takes_activities(events: Sequence[CloudEvent[LeadActivity]], session: AsyncSession) -> None:
    """A batch handler for lead.activity."""


def test_a_handler_registered_for_another_payload_type_fails_at_registration() -> None:
    with pytest.raises(TypeError, match=r"takes CloudEvent\[LeadActivity\] but is registered for LeadScored"):
        Handlers().on(LeadScored, takes_activity)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"takes CloudEvent\[LeadActivity\] but is registered for LeadScored"):
        Handlers().on(LeadScored, partial(takes_activity_with_option, option=1))

    handlers = Handlers().on(LeadActivity, takes_activity)
    assert list(handlers) == ["lead.activity"]
    assert handlers.topics == [Topic.LEADS_ACTIVITY.value]


def test_a_batch_handler_registered_for_another_payload_type_fails_at_registration() -> None:
    with pytest.raises(TypeError, match="LeadActivity"):
        Handlers().on_batch(LeadScored, takes_activities)  # type: ignore[arg-type]
