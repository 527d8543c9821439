"""EventConsumer against a real broker: at-least-once, idempotent, poison never blocks.

The handler under test writes an outbox row `effect-<event id>` in the consumer's transaction, so
what a handler committed is visible in the database.
"""

import asyncio
import json
from collections import Counter
from typing import Any

from shared_tests_support import ConsumerRunner, Kafka, RunningConsumer, Storage
from sqlalchemy.exc import OperationalError
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay import outbox
from leadrelay.consumer import Handlers
from leadrelay.events import (
    CloudEvent,
    LeadActivity,
    LeadAssigned,
    LeadReceived,
    LeadScored,
    Topic,
    dlq_topic,
    new_event,
    utcnow,
)
from leadrelay.stages import LeadStage
from leadrelay.testing import wait_until

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


def consumed(running: RunningConsumer, outcome: str, event_type: str = "lead.scored") -> float:
    return running.value(CONSUMED, topic=TOPIC, type=event_type, outcome=outcome)


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


async def test_stop_during_retry_backoff_leaves_the_event_for_redelivery(
    sqlite_router_db: Storage, kafka: Kafka, consumers: ConsumerRunner
) -> None:
    outage = {"on": True}

    async def handler(event: CloudEvent[Any], session: AsyncSession) -> None:
        if outage["on"]:
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
    await run1.stop()  # arrives during the 30 s backoff before the second attempt

    assert run1.value(DEAD, topic=TOPIC) == 0
    assert await kafka.size(DLQ) == 0

    outage["on"] = False
    run2 = await consumers.start(sqlite_router_db, Handlers().on(LeadScored, handler))
    await wait_effects(sqlite_router_db, event.id)
    await run2.stop()
    assert await effects(sqlite_router_db) == {event.id: 1}
