"""Dead letters: read, show and replay what a consumer gave up on (`leadrelay dlq ...` is the CLI).

Replay remembers how far it got (consumer group `leadrelay-dlq-replay` on the dead-letter topic),
so running it twice does not publish anything twice. Fix the cause first: a replayed event that
fails again is dead-lettered again.
"""

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from leadrelay.events import dlq_topic
from leadrelay.kafka import read_available

REPLAY_GROUP = "leadrelay-dlq-replay"
DLQ_HEADER_PREFIX = "dlq_"


def _headers(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    return {name: value.decode(errors="replace") for name, value in record.headers}


async def _consumer(bootstrap: str, group: str | None) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    return consumer


def dead_letter_entry(record: ConsumerRecord[bytes, bytes], *, payload: bool) -> dict[str, object]:
    """A dead letter as the CLI shows it: where it sits, its key, event id and the `dlq_` headers unprefixed."""
    headers = _headers(record)
    entry: dict[str, object] = {
        "dlq_partition": record.partition,
        "dlq_offset": record.offset,
        "key": (record.key or b"").decode(errors="replace"),
        "event_id": headers.get("ce_id"),
        **{
            name.removeprefix(DLQ_HEADER_PREFIX): value
            for name, value in headers.items()
            if name.startswith(DLQ_HEADER_PREFIX)
        },
    }
    if payload:
        entry["payload"] = (record.value or b"").decode(errors="replace")
    return entry


async def list_dead_letters(bootstrap: str, topic: str, *, payload: bool) -> list[dict[str, object]]:
    """Every dead letter of `topic`, oldest first per partition."""
    consumer = await _consumer(bootstrap, None)
    try:
        records = await read_available(consumer, dlq_topic(topic))
    finally:
        await consumer.stop()
    return [dead_letter_entry(record, payload=payload) for record in records]


async def get_dead_letter(
    bootstrap: str, topic: str, *, partition: int, offset: int, payload: bool, timeout: float = 30.0
) -> dict[str, object] | None:
    """The dead letter of `topic` at `partition` and `offset` of its dead-letter topic, or None."""
    source = TopicPartition(dlq_topic(topic), partition)
    consumer = await _consumer(bootstrap, None)
    try:
        async with asyncio.timeout(timeout):
            while (partitions := consumer.partitions_for_topic(source.topic)) is None:
                await consumer.topics()  # fetches cluster metadata
                await asyncio.sleep(0.05)
            if partition not in partitions:
                return None
            consumer.assign([source])
            consumer.seek(source, offset)
            while True:
                for record in (await consumer.getmany(source, timeout_ms=200)).get(source, []):
                    if record.offset == offset:
                        return dead_letter_entry(record, payload=payload)
                    if record.offset > offset:
                        return None
                highwater = consumer.highwater(source)
                if highwater is not None and await consumer.position(source) >= highwater:
                    return None
    finally:
        await consumer.stop()


async def replay(bootstrap: str, topic: str, *, dry_run: bool) -> int:
    """Publish `topic`'s dead letters not yet replayed back to their original topic."""
    source = dlq_topic(topic)
    consumer = await _consumer(bootstrap, REPLAY_GROUP)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        records = await read_available(consumer, source)
        if dry_run:
            return len(records)
        for record in records:
            headers = _headers(record)
            original = headers.get("dlq_original_topic", topic)
            kept = [(name, value.encode()) for name, value in headers.items() if not name.startswith(DLQ_HEADER_PREFIX)]
            await producer.send_and_wait(original, value=record.value, key=record.key, headers=kept)
            await consumer.commit({TopicPartition(source, record.partition): record.offset + 1})
        return len(records)
    finally:
        await producer.stop()
        await consumer.stop()
