"""Helpers for the shared library's tests: migrated databases, a Kafka helper and a consumer runner.

The fixtures that hand these out live in conftest.py next to this file.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.structs import RecordMetadata
from prometheus_client import CollectorRegistry
from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from leadrelay.consumer import EventConsumer, Handlers
from leadrelay.db import SessionFactory, create_engine, create_session_factory, run_migrations
from leadrelay.kafka import KafkaBus
from leadrelay.metrics import ServiceMetrics
from leadrelay.outbox import OutboxMessage
from leadrelay.settings import ServiceSettings
from leadrelay.testing import read_topic

REPO = Path(__file__).resolve().parents[2]
ROUTER_MIGRATIONS = REPO / "services" / "router" / "migrations"
INTAKE_MIGRATIONS = REPO / "services" / "intake" / "migrations"
PARTITIONS = 3


@dataclass
class Storage:
    """A migrated database: its URL, engine and session factory."""

    url: str
    engine: AsyncEngine
    sessions: SessionFactory

    async def outbox_event_ids(self) -> list[str]:
        """Event ids of the outbox rows, in id order."""
        async with self.sessions() as session:
            return list((await session.exec(select(OutboxMessage.event_id).order_by(OutboxMessage.id))).all())  # type: ignore[arg-type]

    async def outbox_count(self) -> int:
        """Rows in the outbox table."""
        async with self.sessions() as session:
            count: int = (await session.exec(select(func.count()).select_from(OutboxMessage))).one()  # type: ignore[call-overload]
            return count


@asynccontextmanager
async def migrated(url: str, migrations: Path) -> AsyncIterator[Storage]:
    """A database at the head of a service's real migrations; the engine is disposed afterwards."""
    engine = create_engine(url)
    try:
        await run_migrations(engine, migrations)
        yield Storage(url, engine, create_session_factory(engine))
    finally:
        await engine.dispose()


def metric(metrics: ServiceMetrics, name: str, **labels: str) -> float:
    """Current value of one sample (0 when it was never touched)."""
    return metrics.registry.get_sample_value(name, labels) or 0.0


class Kafka:
    """Talks to the test's embedded broker: topics, producing, reading, counting."""

    def __init__(self, bootstrap_servers: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self._topics_ready = False

    def settings(self, **overrides: Any) -> ServiceSettings:
        """Fast consumer settings on this broker (explicit values, so the environment cannot leak in)."""
        values: dict[str, Any] = {
            "kafka_bootstrap_servers": self.bootstrap_servers,
            "kafka_session_timeout_ms": 3000,
            "kafka_heartbeat_interval_ms": 500,
            "kafka_topic_partitions": PARTITIONS,
            "kafka_idempotence": False,
            "consumer_retry_backoff_seconds": 0.01,
            "consumer_max_retries": 3,
            "consumer_batch_size": 200,
            "service_name": "test",
            **overrides,
        }
        return ServiceSettings(_env_file=None, **values)  # type: ignore[call-arg]

    async def ensure_topics(self) -> None:
        """Create every LeadRelay topic (and its DLQ) with PARTITIONS partitions."""
        if not self._topics_ready:
            await KafkaBus(self.settings(), ServiceMetrics(CollectorRegistry())).ensure_topics()
            self._topics_ready = True

    async def produce(
        self, topic: str, *messages: tuple[str | None, bytes] | tuple[str | None, bytes, dict[str, str]]
    ) -> list[RecordMetadata]:
        """Produce (key, value[, headers]) messages in order; returns their metadata."""
        await self.ensure_topics()
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers, acks="all")
        await producer.start()
        try:
            sent = []
            for message in messages:
                key, value = message[0], message[1]
                headers = message[2] if len(message) == 3 else {}  # type: ignore[misc]
                sent.append(
                    await producer.send_and_wait(
                        topic,
                        value=value,
                        key=key.encode() if key is not None else None,
                        headers=[(name, header.encode()) for name, header in headers.items()],
                    )
                )
            return sent
        finally:
            await producer.stop()

    async def prime_group(self, group: str, topic: str) -> None:
        """Make the group's real members join in about 1 s and leave it cleanly when they stop.

        On the embedded broker (Tansu) a group's first member gets generation 0, and aiokafka sends
        LeaveGroup only for generation > 0: without this, a consumer stopped and restarted in the same
        group waits out the first member's session timeout (about 7 s with a 3 s session). Tansu also
        derives the group's join delay from its first member's session timeout. So a short-lived
        member joins first and is left to expire quickly; real members then get generation >= 1.
        """
        primer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=self.bootstrap_servers,
            group_id=group,
            session_timeout_ms=1000,
            heartbeat_interval_ms=300,
            enable_auto_commit=False,
        )
        await primer.start()
        try:
            async with asyncio.timeout(15):
                while not primer.assignment():
                    await primer.getmany(timeout_ms=50)
        finally:
            await primer.stop()

    async def read(self, topic: str, count: int, timeout: float = 15.0) -> list[ConsumerRecord[bytes, bytes]]:
        """At least `count` records of a topic, read from the beginning."""
        return await read_topic(self.bootstrap_servers, topic, min_count=count, timeout=timeout)

    async def size(self, topic: str, timeout: float = 15.0) -> int:
        """Records in a topic, counted by reading it to the high watermark of a fetch.

        Not ListOffsets (end_offsets): the embedded broker answers it with the last batch's base
        offset + 1, which undercounts whenever the last batch held more than one record.
        """
        await self.ensure_topics()
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, group_id=None, enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            count = 0
            async with asyncio.timeout(timeout):
                while True:
                    batch = await consumer.getmany(*partitions, timeout_ms=100)
                    count += sum(len(records) for records in batch.values())
                    if await self._at_highwater(consumer, partitions):
                        return count
        finally:
            await consumer.stop()

    @staticmethod
    async def _at_highwater(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> bool:
        for tp in partitions:
            highwater = consumer.highwater(tp)  # known once a fetch for the partition has answered
            if highwater is None or await consumer.position(tp) < highwater:
                return False
        return True


@dataclass
class RunningConsumer:
    """An EventConsumer running in a task, with its own metrics registry and bus."""

    consumer: EventConsumer
    metrics: ServiceMetrics
    bus: KafkaBus
    task: asyncio.Task[None]
    stopped: bool = field(default=False)

    def value(self, name: str, **labels: str) -> float:
        """A sample of this consumer's metrics."""
        return metric(self.metrics, name, **labels)

    async def stop(self, timeout: float = 20.0) -> None:
        """Ask the loop to stop, wait for it (it commits and leaves the group), close the bus."""
        if self.stopped:
            return
        self.stopped = True
        self.consumer.stop()
        try:
            await asyncio.wait_for(self.task, timeout)
        finally:
            await self.bus.close()


class ConsumerRunner:
    """Starts EventConsumers on the test's broker; whatever is still running is stopped at teardown."""

    def __init__(self, kafka: Kafka) -> None:
        self.kafka = kafka
        self.running: list[RunningConsumer] = []
        self._primed: set[str] = set()

    async def start(self, storage: Storage, handlers: Handlers, **overrides: Any) -> RunningConsumer:
        """Run a consumer of `handlers` against `storage` (topics are created first)."""
        await self.kafka.ensure_topics()
        settings = self.kafka.settings(**overrides)
        if settings.consumer_group not in self._primed:
            topic = handlers.topics[0]
            await self.kafka.prime_group(settings.consumer_group, topic)
            self._primed.add(settings.consumer_group)
        metrics = ServiceMetrics(CollectorRegistry())
        bus = KafkaBus(settings, metrics)
        consumer = EventConsumer(
            settings=settings, bus=bus, sessions=storage.sessions, handlers=handlers, metrics=metrics
        )
        running = RunningConsumer(consumer, metrics, bus, asyncio.create_task(consumer.run()))
        self.running.append(running)
        return running

    async def stop_all(self) -> None:
        """Stop every consumer still running."""
        for running in self.running:
            await running.stop()
