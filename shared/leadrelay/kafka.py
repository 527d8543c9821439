"""Kafka bus on aiokafka: one producer per process, topic creation, and noticing a broker that lost its data."""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import uuid4

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.structs import RecordMetadata

from leadrelay.events import Topic, dlq_topic, utcnow
from leadrelay.metrics import ServiceMetrics
from leadrelay.settings import ServiceSettings

logger = logging.getLogger(__name__)

# Every process writes a marker record here and checks now and then that it is still there: a
# broker that lost its data (the embedded one keeps nothing across a restart) has lost the marker.
MARKER_TOPIC = "leadrelay.markers"
# Topics that hold the latest state per key (every key's announcement): kept forever, compacted.
COMPACTED_TOPICS = {Topic.API_KEYS.value, Topic.TEAMS.value}
COMPACTED = {"cleanup.policy": "compact"}


@dataclass(frozen=True)
class OutgoingMessage:
    """A message ready for Kafka."""

    topic: str
    key: str
    value: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LogPosition:
    """Where the broker stored an event: enough to ask later whether it still has it."""

    topic: str
    partition: int
    offset: int
    event_id: str


async def stop_quietly(client: AIOKafkaConsumer | AIOKafkaProducer, timeout: float = 5.0) -> None:
    """Stop an aiokafka client whose broker may be gone, without letting its internals end our task.

    A consumer stopped while its broker is down cancels its pending fetches, and aiokafka lets that
    CancelledError escape from `stop()`; taken at face value it would silently end the calling task.
    """
    try:
        async with asyncio.timeout(timeout):
            await client.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # we are being cancelled ourselves
    except Exception as exc:
        logger.debug("kafka client stopped with an error", extra={"error": repr(exc)})


def all_topics() -> list[str]:
    """Every topic LeadRelay uses: event topics, their dead-letter topics and the marker topic."""
    return [*(name for topic in Topic for name in (topic.value, dlq_topic(topic.value))), MARKER_TOPIC]


class KafkaBus:
    """Owns the process's one producer; connects lazily so a service starts while the broker is down."""

    def __init__(self, settings: ServiceSettings, metrics: ServiceMetrics) -> None:
        self._settings = settings
        self._metrics = metrics
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    @property
    def bootstrap_servers(self) -> str:
        """The broker addresses."""
        return self._settings.kafka_bootstrap_servers

    def consumer_options(self) -> dict[str, Any]:
        """Fetch settings every consumer of this process uses.

        The embedded broker holds a fetch for the whole `fetch_max_wait_ms` even when records
        arrive meanwhile, so the wait is what an idle consumer adds to every hop; Apache Kafka
        answers as soon as `fetch_min_bytes` are there. A short wait suits both, but every idle
        fetch costs the broker and the consumer CPU (docs/configuration.md).
        """
        return {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": f"leadrelay-{self._settings.service_name}",
            "fetch_max_wait_ms": self._settings.kafka_fetch_max_wait_ms,
            "fetch_min_bytes": 1,
        }

    async def producer(self) -> AIOKafkaProducer:
        """The started producer, starting it (and creating the topics) on first use."""
        async with self._lock:
            if self._producer is None:
                await self.ensure_topics()
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap_servers,
                    client_id=f"leadrelay-{self._settings.service_name}",
                    acks="all",
                    enable_idempotence=self._settings.kafka_idempotence,
                    request_timeout_ms=10_000,
                    linger_ms=self._settings.kafka_linger_ms,
                )
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def publish_batch(self, messages: list[OutgoingMessage]) -> list[RecordMetadata]:
        """Send messages in order and wait until the broker acknowledged every one; returns where each went."""
        producer = await self.producer()
        pending = [
            await producer.send(
                message.topic,
                value=message.value,
                key=message.key.encode(),
                headers=[(name, value.encode()) for name, value in message.headers.items()],
            )
            for message in messages
        ]
        stored: list[RecordMetadata] = list(await asyncio.gather(*pending))
        for message in messages:
            self._metrics.events_published_total.labels(message.topic).inc()
        return stored

    async def ensure_topics(self) -> list[str]:
        """Create every LeadRelay topic, dead-letter topic and the marker topic if missing; returns those created."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers, request_timeout_ms=10_000)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [
                NewTopic(
                    name,
                    1 if name == MARKER_TOPIC else self._settings.kafka_topic_partitions,
                    self._settings.kafka_replication_factor,
                    topic_configs=COMPACTED if name in COMPACTED_TOPICS else None,
                )
                for name in all_topics()
                if name not in existing
            ]
            if missing:
                with contextlib.suppress(TopicAlreadyExistsError):  # another service was first
                    await admin.create_topics(missing)
            return [topic.name for topic in missing]
        finally:
            await admin.close()

    async def missing_topics(self) -> list[str]:
        """LeadRelay topics the broker does not know (all of them, after the embedded broker restarted)."""
        producer = await self.producer()
        metadata = await producer.client.fetch_all_metadata()
        known = metadata.topics()
        return [name for name in all_topics() if name not in known]

    async def is_reachable(self, timeout: float = 2.0) -> bool:
        """Whether the broker answers a metadata request in time."""
        try:
            producer = await asyncio.wait_for(self.producer(), timeout)
            async with asyncio.timeout(timeout):
                return bool(await producer.client.fetch_all_metadata())
        except (TimeoutError, KafkaError, OSError):
            return False

    async def still_stored(
        self, positions: Iterable[LogPosition], *, from_log_start: bool = False, timeout: float = 30.0
    ) -> set[str]:
        """The event ids among `positions` that the broker still holds where it said it stored them.

        Reads each partition from the lowest wanted offset to its high watermark (the embedded
        broker's ListOffsets undercounts, so the fetch's high watermark decides). An event missing
        there was lost: the partition now ends below it, or was recreated and holds another record.

        `from_log_start` reads each partition from its start instead, as a consumer that starts
        over does. Needed once the broker lost its data in place: the embedded broker then also
        acknowledges records sent into a partition it does not know yet (a retried or early send)
        and keeps them at offset 0 without counting them, so records it acknowledges after the topic
        is recreated can land at offsets that batch already covers. A read from such an offset
        returns them, but a consumer reading the partition in order gets the older batch's records
        at those offsets and never sees them: they are lost just the same.
        """
        wanted: dict[TopicPartition, dict[int, set[str]]] = {}
        for position in positions:
            offsets = wanted.setdefault(TopicPartition(position.topic, position.partition), {})
            offsets.setdefault(position.offset, set()).add(position.event_id)
        if not wanted:
            return set()
        consumer = AIOKafkaConsumer(
            **self.consumer_options(), group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        found: set[str] = set()
        await consumer.start()
        try:
            consumer.assign(list(wanted))
            if from_log_start:
                await consumer.seek_to_beginning(*wanted)
            else:
                for tp, offsets in wanted.items():
                    consumer.seek(tp, min(offsets))
            pending = set(wanted)
            deadline = time.monotonic() + timeout
            while pending:
                if time.monotonic() > deadline:
                    raise TimeoutError("reading back published events took too long")
                batch = await consumer.getmany(*pending, timeout_ms=200)
                for tp, records in batch.items():
                    for record in records:
                        event_id = dict(record.headers).get("ce_id", b"").decode(errors="replace")
                        if event_id in wanted[tp].get(record.offset, ()):
                            found.add(event_id)
                for tp in list(pending):
                    highwater = consumer.highwater(tp)
                    position = await consumer.position(tp)
                    if highwater is not None and (position >= highwater or position > max(wanted[tp])):
                        pending.discard(tp)
        finally:
            await stop_quietly(consumer)
        return found

    async def close(self) -> None:
        """Flush and stop the producer."""
        async with self._lock:
            if self._producer is not None:
                await self._producer.stop()
                self._producer = None


LossListener = Callable[[datetime], None]


class BrokerWatch:
    """Notices a broker that lost its data, recreates the topics and tells the consumers to start over.

    Apache Kafka keeps its data; the embedded broker keeps nothing across a restart, and then
    answers as if nothing happened: no topics, no committed offsets, new records at old offsets.
    Each process writes a marker record and checks every `interval` that the broker still has it
    and every topic. When not, it recreates the topics, writes a new marker and calls its listeners
    with the time of the loss (consumers rejoin from the beginning; intake re-drives in-flight leads).
    """

    def __init__(self, bus: KafkaBus, *, interval: float, metrics: ServiceMetrics) -> None:
        self._bus = bus
        self._metrics = metrics
        self._interval = interval
        self._listeners: list[LossListener] = []
        self._marker: tuple[int, str] | None = None
        self._reader: AIOKafkaConsumer | None = None
        self.recovering = False
        self.losses = 0
        self._check_now = asyncio.Event()

    def on_loss(self, listener: LossListener) -> None:
        """Call `listener(lost_at)` after each recovery from a broker that lost its data."""
        self._listeners.append(listener)

    @contextlib.contextmanager
    def listening(self, listener: LossListener) -> Iterator[None]:
        """`on_loss` for as long as the block runs (a job that may be stopped and started again)."""
        self._listeners.append(listener)
        try:
            yield
        finally:
            self._listeners.remove(listener)

    def check_soon(self) -> None:
        """Check now rather than at the next interval (a consumer saw signs of a lost topic)."""
        self._check_now.set()

    async def run(self) -> None:
        """Check until cancelled; a broker that is down is simply checked again later."""
        try:
            while True:
                try:
                    async with asyncio.timeout(max(self._interval * 4, 5.0)):  # a broker that hangs is a failed check
                        await self.check()
                except (KafkaError, OSError, TimeoutError) as exc:
                    logger.debug("broker check failed", extra={"error": repr(exc)})
                    await self._close_reader()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._interval):
                        await self._check_now.wait()
                self._check_now.clear()
        finally:
            await self._close_reader()

    async def check(self) -> bool:
        """Check once; returns True when a loss was found (and recovered from)."""
        if self._marker is None:
            await self._bus.ensure_topics()
            self._marker = await self._write_marker()
            return False
        missing = await self._bus.missing_topics()
        if not missing and await self._marker_present(*self._marker):
            return False
        # Not ready until recovered; a recovery that fails halfway is tried again at the next check,
        # and the loss is counted and announced once, when it succeeded.
        self.recovering = True
        logger.warning(
            "the broker lost its data: recreating topics; consumers start over and lost events are re-driven",
            extra={"missing_topics": len(missing)},
        )
        await self._bus.ensure_topics()
        self._marker = await self._write_marker()
        self.recovering = False
        self.losses += 1
        self._metrics.broker_losses_total.inc()
        lost_at = utcnow()
        for listener in self._listeners:
            listener(lost_at)
        return True

    async def _write_marker(self) -> tuple[int, str]:
        # Read it back before trusting it: right after creating topics, the embedded broker may still
        # drop what was written into them.
        for _ in range(10):
            marker = str(uuid4())
            (stored,) = await self._bus.publish_batch(
                [OutgoingMessage(MARKER_TOPIC, key=marker, value=marker.encode())]
            )
            await self._close_reader()
            if await self._marker_present(stored.offset, marker):
                return stored.offset, marker
            await asyncio.sleep(0.1)
        raise TimeoutError("the broker does not keep the marker record")

    async def _marker_present(self, offset: int, marker: str) -> bool:
        if self._reader is None:
            reader = AIOKafkaConsumer(
                **self._bus.consumer_options(), group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
            )
            await reader.start()
            reader.assign([TopicPartition(MARKER_TOPIC, 0)])
            self._reader = reader
        tp = TopicPartition(MARKER_TOPIC, 0)
        self._reader.seek(tp, offset)
        self._reader.resume(tp)
        try:
            async with asyncio.timeout(5):
                while True:
                    batch = await self._reader.getmany(tp, timeout_ms=200)
                    for record in batch.get(tp, []):
                        if record.offset == offset:
                            return bool(record.value == marker.encode())
                        if record.offset > offset:
                            return False
                    highwater = self._reader.highwater(tp)
                    if highwater is not None and highwater <= offset:
                        return False
        finally:
            # Paused between checks: an assigned partition is fetched from again and again in the
            # background, which kept the broker answering a long poll of every service's watch.
            self._reader.pause(tp)

    async def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            await stop_quietly(reader)


async def read_available(
    consumer: AIOKafkaConsumer, topic: str, *, timeout: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Assign all of a topic's partitions and read from the consumer's positions to their high watermarks.

    The high watermark comes from fetch responses rather than `end_offsets`, which the embedded
    broker answers with the last batch's base offset.
    """
    deadline = time.monotonic() + timeout
    while (partition_ids := consumer.partitions_for_topic(topic)) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no metadata for topic {topic}")
        await consumer.topics()  # fetches cluster metadata
        await asyncio.sleep(0.05)
    partitions = [TopicPartition(topic, partition) for partition in sorted(partition_ids)]
    consumer.assign(partitions)
    records: list[ConsumerRecord[bytes, bytes]] = []
    while True:
        for batch in (await consumer.getmany(timeout_ms=200)).values():
            records.extend(batch)
        behind = [
            tp
            for tp in partitions
            if (highwater := consumer.highwater(tp)) is None or await consumer.position(tp) < highwater
        ]
        if not behind:
            return records
        if time.monotonic() > deadline:
            raise TimeoutError(f"reading {topic} to its end took longer than {timeout}s")
