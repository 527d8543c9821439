"""Kafka bus on aiokafka: one producer per process, and a consumer loop with at-least-once handling."""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay import idempotency
from leadrelay.db import SessionFactory, is_unavailable
from leadrelay.events import CloudEvent, EventData, Topic, dlq_topic, parse_envelope, parse_event, utcnow
from leadrelay.logs import event_id_var, lead_id_var
from leadrelay.metrics import ServiceMetrics
from leadrelay.settings import ServiceSettings

logger = logging.getLogger(__name__)

Handler = Callable[[CloudEvent[Any], AsyncSession], Awaitable[None]]
HandlerMap = Mapping[type[EventData], Handler]


@dataclass(frozen=True)
class OutgoingMessage:
    """A message ready for Kafka."""

    topic: str
    key: str
    value: bytes
    headers: dict[str, str] = field(default_factory=dict)


class KafkaBus:
    """Owns the process's one producer; connects lazily so a service starts while the broker is down."""

    def __init__(self, settings: ServiceSettings, metrics: ServiceMetrics) -> None:
        self._settings = settings
        self._metrics = metrics
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def producer(self) -> AIOKafkaProducer:
        """The started producer, starting it (and creating the topics) on first use."""
        async with self._lock:
            if self._producer is None:
                await self.ensure_topics()
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._settings.kafka_bootstrap_servers,
                    client_id=f"leadrelay-{self._settings.service_name}",
                    acks="all",
                    enable_idempotence=self._settings.kafka_idempotence,
                    request_timeout_ms=10_000,
                    linger_ms=5,
                )
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def publish_batch(self, messages: list[OutgoingMessage]) -> None:
        """Send messages in order and wait until the broker acknowledged every one."""
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
        await asyncio.gather(*pending)
        for message in messages:
            self._metrics.events_published_total.labels(message.topic).inc()

    async def ensure_topics(self) -> None:
        """Create every LeadRelay topic and its dead-letter topic if missing."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self._settings.kafka_bootstrap_servers, request_timeout_ms=10_000)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            wanted = [name for topic in Topic for name in (topic.value, dlq_topic(topic.value))]
            missing = [
                NewTopic(name, self._settings.kafka_topic_partitions, self._settings.kafka_replication_factor)
                for name in wanted
                if name not in existing
            ]
            if missing:
                with contextlib.suppress(TopicAlreadyExistsError):  # another service was first
                    await admin.create_topics(missing)
        finally:
            await admin.close()

    async def is_reachable(self, timeout: float = 2.0) -> bool:
        """Whether the broker answers a metadata request in time."""
        try:
            producer = await asyncio.wait_for(self.producer(), timeout)
            async with asyncio.timeout(timeout):
                return bool(await producer.client.fetch_all_metadata())
        except (TimeoutError, KafkaError, OSError):
            return False

    async def close(self) -> None:
        """Flush and stop the producer."""
        async with self._lock:
            if self._producer is not None:
                await self._producer.stop()
                self._producer = None


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer_loop: "EventConsumer") -> None:
        self._loop = consumer_loop

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._loop.commit_processed()
        for tp in revoked:
            self._loop.forget_partition(tp)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        logger.info("partitions assigned", extra={"partitions": [f"{tp.topic}:{tp.partition}" for tp in assigned]})


class EventConsumer:
    """Consumes the topics its handlers need; commits an offset only after the handler's transaction.

    Each event is handled in one database transaction together with its processed-event record,
    so a redelivery is a no-op. A failing event is retried with backoff, then dead-lettered to
    `<topic>.dlq` with the error in its headers, and the loop moves on.
    """

    def __init__(
        self,
        *,
        settings: ServiceSettings,
        bus: KafkaBus,
        sessions: SessionFactory,
        handlers: HandlerMap,
        metrics: ServiceMetrics,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._settings = settings
        self._bus = bus
        self._sessions = sessions
        self._handlers = {data_type.event_type: handler for data_type, handler in handlers.items()}
        self.topics = sorted({data_type.topic.value for data_type in handlers})
        self._metrics = metrics
        self._on_commit = on_commit
        self._consumer: AIOKafkaConsumer | None = None
        self._processed: dict[TopicPartition, int] = {}
        self._stopping = asyncio.Event()
        self.last_poll = time.monotonic()
        self.connected = False

    @property
    def name(self) -> str:
        """Consumer group, also the owner of processed-event records."""
        return self._settings.consumer_group

    def is_stuck(self) -> bool:
        """Whether the loop has not polled for longer than the configured threshold."""
        return time.monotonic() - self.last_poll > self._settings.consumer_stuck_after_seconds

    def stop(self) -> None:
        """Ask the loop to finish the message in hand, commit and leave the group."""
        self._stopping.set()

    async def run(self) -> None:
        """Consume until stopped, reconnecting with backoff when the broker is unreachable."""
        backoff = 0.2
        while not self._stopping.is_set():
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._settings.kafka_bootstrap_servers,
                group_id=self.name,
                client_id=f"leadrelay-{self._settings.service_name}",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=self._settings.kafka_session_timeout_ms,
                heartbeat_interval_ms=self._settings.kafka_heartbeat_interval_ms,
                max_poll_records=self._settings.consumer_batch_size,
            )
            try:
                # Create topics first, so a subscription never auto-creates them with broker defaults.
                await self._bus.ensure_topics()
                consumer.subscribe(self.topics, listener=_CommitOnRevoke(self))
                await consumer.start()
            except (KafkaError, OSError) as exc:
                await consumer.stop()
                logger.warning("broker unreachable, consumer will retry", extra={"error": repr(exc)})
                self.last_poll = time.monotonic()  # waiting for the broker is not being stuck
                await self._wait(backoff)
                backoff = min(backoff * 2, self._settings.kafka_connect_backoff_max_seconds)
                continue
            backoff = 0.2
            self._consumer = consumer
            self.connected = True
            try:
                await self._consume(consumer)
            except KafkaError as exc:
                logger.warning("consumer lost the broker, reconnecting", extra={"error": repr(exc)})
            finally:
                self.connected = False
                try:
                    await self.commit_processed()
                finally:
                    self._consumer = None
                    await consumer.stop()

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        while not self._stopping.is_set():
            self.last_poll = time.monotonic()
            batch = await consumer.getmany(timeout_ms=500, max_records=self._settings.consumer_batch_size)
            for tp, record in _in_order(batch):
                if self._stopping.is_set() or not await self.handle_record(record):
                    break  # stopping: unhandled records are redelivered after a restart
                self._processed[tp] = record.offset + 1
            await self.commit_processed()
            await self._update_lag(consumer)

    async def commit_processed(self) -> None:
        """Commit offsets of records whose handling has committed."""
        if self._consumer is None or not self._processed:
            return
        offsets, self._processed = self._processed, {}
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:  # the records will be redelivered and deduplicated
            logger.warning("offset commit failed", extra={"error": repr(exc)})

    def forget_partition(self, tp: TopicPartition) -> None:
        """Drop state for a partition this member no longer owns."""
        self._processed.pop(tp, None)
        with contextlib.suppress(KeyError):  # no lag was recorded for it yet
            self._metrics.consumer_lag.remove(tp.topic, str(tp.partition))

    async def handle_record(self, record: ConsumerRecord[bytes, bytes]) -> bool:
        """Handle one record: parse, dispatch with retries, dead-letter when nothing else works.

        Returns False when the record was left unhandled because the consumer is stopping.
        """
        raw = record.value or b""
        try:
            envelope = parse_envelope(raw)
        except ValidationError as exc:
            await self._dead_letter(record, exc, attempts=1)
            return True
        handler = self._handlers.get(envelope.type)
        if handler is None:
            self._metrics.events_consumed_total.labels(record.topic, "other", "ignored").inc()
            return True
        try:
            event = parse_event(raw)
        except ValidationError as exc:  # a type we handle with a payload we cannot read: retrying won't help
            await self._dead_letter(record, exc, attempts=1)
            return True
        lead_token = lead_id_var.set(event.subject)
        event_token = event_id_var.set(event.id)
        try:
            return await self._handle_with_retries(record, event, handler)
        finally:
            lead_id_var.reset(lead_token)
            event_id_var.reset(event_token)

    async def _handle_with_retries(
        self, record: ConsumerRecord[bytes, bytes], event: CloudEvent[Any], handler: Handler
    ) -> bool:
        attempts = self._settings.consumer_max_retries + 1
        failures = 0
        while True:
            try:
                outcome = await self._handle_once(event, handler)
            except Exception as exc:
                self._metrics.events_failed_total.labels(record.topic, event.type).inc()
                if is_unavailable(exc):
                    # The database is unreachable or busy: not the event's fault, so it never counts
                    # toward dead-lettering; the consumer waits (and stays in the group) until it is back.
                    logger.warning("database unavailable, retrying event", extra={"error": type(exc).__name__})
                    await self._wait(self._settings.kafka_connect_backoff_max_seconds)
                else:
                    failures += 1
                    logger.warning(
                        "event handler failed",
                        extra={
                            "attempt": failures,
                            "event_type": event.type,
                            "error": f"{type(exc).__name__}: {_describe(exc)}",
                        },
                    )
                    if failures == attempts:
                        await self._dead_letter(record, exc, attempts=failures)
                        return True
                    await self._wait(self._settings.consumer_retry_backoff_seconds * 2 ** (failures - 1))
            else:
                self._metrics.events_consumed_total.labels(record.topic, event.type, outcome).inc()
                if outcome == "processed":
                    self._on_commit()
                return True
            if self._stopping.is_set():
                return False  # not dead-lettered on the way out: it is redelivered after the restart
            self.last_poll = time.monotonic()  # retrying is progress, not a stuck loop

    async def _handle_once(self, event: CloudEvent[Any], handler: Handler) -> str:
        try:
            async with self._sessions() as session, session.begin():
                if not await idempotency.claim(session, consumer=self.name, event_id=event.id):
                    return "duplicate"
                await handler(event, session)
        except IntegrityError:
            async with self._sessions() as session:
                if await session.get(idempotency.ProcessedEvent, (self.name, event.id)) is not None:
                    return "duplicate"  # a concurrent member handled it first
            raise
        return "processed"

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], error: BaseException, *, attempts: int) -> None:
        topic = dlq_topic(record.topic)
        headers = {name: value.decode(errors="replace") for name, value in record.headers}
        headers.update(
            {
                "dlq_original_topic": record.topic,
                "dlq_original_partition": str(record.partition),
                "dlq_original_offset": str(record.offset),
                "dlq_consumer_group": self.name,
                "dlq_error_type": type(error).__name__,
                "dlq_error_message": _describe(error)[:2000],
                "dlq_attempts": str(attempts),
                "dlq_failed_at": utcnow().isoformat(),
            }
        )
        key = (record.key or b"").decode(errors="replace")
        await self._bus.publish_batch(
            [OutgoingMessage(topic=topic, key=key, value=record.value or b"", headers=headers)]
        )
        self._metrics.events_dead_lettered_total.labels(record.topic).inc()
        logger.error(
            "event dead-lettered",
            extra={"topic": record.topic, "offset": record.offset, "dlq_topic": topic, "error": type(error).__name__},
        )

    async def _update_lag(self, consumer: AIOKafkaConsumer) -> None:
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue  # nothing fetched from this partition yet
            lag = max(highwater - await consumer.position(tp), 0)
            self._metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)


def _in_order(
    batch: Mapping[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
) -> Iterator[tuple[TopicPartition, ConsumerRecord[bytes, bytes]]]:
    for tp, records in batch.items():
        for record in records:
            yield tp, record


def _describe(error: BaseException) -> str:
    # Validation messages must not carry the offending input: it may be an email or a phone number.
    if isinstance(error, ValidationError):
        return "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or 'event'}: {item['msg']}"
            for item in error.errors(include_input=False, include_url=False)
        )
    return str(error)


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
