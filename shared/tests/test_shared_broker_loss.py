"""Knowing what the broker still holds: a broker that lost its data is noticed, lost events are found."""

import asyncio
import contextlib
from datetime import datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from leadrelay.broker import EmbeddedBroker
from leadrelay.kafka import MARKER_TOPIC, BrokerWatch, KafkaBus, LogPosition, all_topics
from leadrelay.metrics import ServiceMetrics
from leadrelay.testing import Kafka, wait_until

TOPIC = "leads.received"


def _bus(kafka: Kafka) -> KafkaBus:
    return KafkaBus(kafka.settings(), ServiceMetrics(CollectorRegistry()))


async def test_still_stored_tells_kept_events_from_lost_ones(broker: EmbeddedBroker, kafka: Kafka) -> None:
    first, second = await kafka.produce(
        TOPIC, ("lead-1", b"{}", {"ce_id": "event-1"}), ("lead-2", b"{}", {"ce_id": "event-2"})
    )
    bus = _bus(kafka)
    try:
        kept = LogPosition(TOPIC, first.partition, first.offset, "event-1")
        also_kept = LogPosition(TOPIC, second.partition, second.offset, "event-2")
        other_record = LogPosition(TOPIC, first.partition, first.offset, "event-that-was-there-before")
        past_the_end = LogPosition(TOPIC, second.partition, second.offset + 5, "event-3")

        found = await bus.still_stored([kept, also_kept, other_record, past_the_end])

        assert found == {"event-1", "event-2"}
        assert await bus.still_stored([]) == set()
    finally:
        await bus.close()


async def test_a_restarted_embedded_broker_is_noticed_and_its_topics_recreated(
    broker: EmbeddedBroker, kafka: Kafka
) -> None:
    bus = _bus(kafka)
    metrics = ServiceMetrics(CollectorRegistry())
    watch = BrokerWatch(bus, interval=0.1, metrics=metrics)
    losses: list[datetime] = []
    watch.on_loss(losses.append)
    try:
        assert await watch.check() is False  # the first check writes the marker
        assert await watch.check() is False
        (stored,) = await kafka.produce(TOPIC, ("lead-1", b"{}", {"ce_id": "event-1"}))

        broker.kill()
        broker.start()

        async def noticed() -> bool:
            try:
                return await watch.check()
            except Exception:  # the first requests after a restart may meet a stale connection
                return False

        await wait_until(noticed, timeout=30, what="the watch to notice the lost data")
        assert len(losses) == 1
        assert metrics.registry.get_sample_value("leadrelay_broker_losses_total") == 1
        assert await bus.missing_topics() == []
        assert set(all_topics()) >= {TOPIC, MARKER_TOPIC}
        assert await bus.still_stored([LogPosition(TOPIC, stored.partition, stored.offset, "event-1")]) == set()
        assert await watch.check() is False  # recovered: the new marker is there
    finally:
        await bus.close()


async def test_between_checks_the_watch_does_not_poll_the_broker(broker: EmbeddedBroker, kafka: Kafka) -> None:
    bus = _bus(kafka)
    watch = BrokerWatch(bus, interval=60, metrics=ServiceMetrics(CollectorRegistry()))
    try:
        assert await watch.check() is False  # writes the marker and reads it back
        assert await watch.check() is False
        # An assigned partition that is not paused is fetched from continuously in the background:
        # a long poll of the broker every KAFKA_FETCH_MAX_WAIT_MS from every service, for a check a second.
        reader = watch._reader
        assert reader is not None
        assert reader.paused() == {TopicPartition(MARKER_TOPIC, 0)}
        assert await watch.check() is False  # and the next check reads it again
        assert reader.paused() == {TopicPartition(MARKER_TOPIC, 0)}
    finally:
        await bus.close()


async def test_a_second_process_that_recreated_the_topics_first_does_not_hide_the_loss(
    broker: EmbeddedBroker, kafka: Kafka
) -> None:
    ours, theirs = _bus(kafka), _bus(kafka)
    watch = BrokerWatch(ours, interval=0.1, metrics=ServiceMetrics(CollectorRegistry()))
    other = BrokerWatch(theirs, interval=0.1, metrics=ServiceMetrics(CollectorRegistry()))
    try:
        await watch.check()
        await other.check()
        broker.kill()
        broker.start()

        async def recreated_by_the_other() -> bool:
            try:
                return await other.check()
            except Exception:
                return False

        await wait_until(recreated_by_the_other, timeout=30, what="the other process to recreate the topics")
        assert await ours.missing_topics() == []  # every topic is there again...

        async def noticed() -> bool:
            try:
                return await watch.check()
            except Exception:
                return False

        await wait_until(noticed, timeout=30, what="our watch to notice all the same")  # ...but our marker is gone
    finally:
        await ours.close()
        await theirs.close()


async def test_the_key_topic_is_created_compacted(broker: EmbeddedBroker, kafka: Kafka) -> None:
    # Compacted, so on Apache Kafka the topic keeps every key's latest announcement past retention.
    bus = _bus(kafka)
    try:
        assert set(await bus.ensure_topics()) == set(all_topics())
    finally:
        await bus.close()
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    await admin.start()
    try:
        keys, leads = (ConfigResource(ConfigResourceType.TOPIC, name) for name in ("leadrelay.apikeys", TOPIC))
        (answer,) = await admin.describe_configs([keys, leads])
    finally:
        await admin.close()
    policies = {
        resource[3]: {entry[0]: entry[1] for entry in resource[4]}.get("cleanup.policy")
        for resource in answer.resources
    }
    assert policies["leadrelay.apikeys"] == "compact"
    assert policies[TOPIC] != "compact"


async def test_after_a_loss_a_record_a_consumer_reading_in_order_never_gets_counts_as_lost(
    broker: EmbeddedBroker, kafka: Kafka
) -> None:
    """The embedded broker, restarted, keeps a batch sent before its topic was recreated at offset 0
    without counting it; records it acknowledges later at offsets that batch covers are shadowed."""
    tp = TopicPartition(TOPIC, 0)
    bus = _bus(kafka)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    await kafka.ensure_topics()
    await producer.start()
    try:

        async def send(prefix: str, count: int) -> list[int]:
            pending = [
                await producer.send(TOPIC, b"{}", partition=0, headers=[("ce_id", f"{prefix}{n}".encode())])
                for n in range(count)
            ]
            return [(await future).offset for future in pending]

        await send("before", 3)
        broker.kill()
        broker.start()
        await send("early", 6)  # the new broker does not know the topic yet, and acknowledges anyway
        await bus.ensure_topics()
        with contextlib.suppress(KafkaError):
            await send("collides", 2)  # offset 0 is taken: refused, but it moves the partition's end
        offsets = await send("late", 4)
        shadowed = [f"late{n}" for n, offset in enumerate(offsets) if offset < 6]
        assert shadowed, f"the broker no longer shadows records (late records at {offsets}): drop this test"

        positions = [LogPosition(TOPIC, 0, offset, f"late{n}") for n, offset in enumerate(offsets)]
        seen_in_order = {dict(record.headers)["ce_id"].decode() for record in await _read_partition_in_order(kafka, tp)}
        assert not set(shadowed) & seen_in_order
        assert set(shadowed) <= await bus.still_stored(positions)  # a read from the offset finds them...
        after_loss = await bus.still_stored(positions, from_log_start=True)
        assert after_loss == {f"late{n}" for n in range(4)} & seen_in_order  # ...a read in order does not
    finally:
        await producer.stop()
        await bus.close()


async def _read_partition_in_order(kafka: Kafka, tp: TopicPartition) -> list[ConsumerRecord[bytes, bytes]]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        records: list[ConsumerRecord[bytes, bytes]] = []
        async with asyncio.timeout(15):
            while (highwater := consumer.highwater(tp)) is None or await consumer.position(tp) < highwater:
                records.extend((await consumer.getmany(tp, timeout_ms=200)).get(tp, []))
        return records
    finally:
        await consumer.stop()
