"""The fetch loop: join the group, fetch batches, hand them to the dispatcher, commit offsets after."""

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence, Set
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError, UnknownTopicOrPartitionError

from leadrelay.consumer.deadletter import DeadLetterPublisher
from leadrelay.consumer.dispatch import Dispatcher, Record
from leadrelay.consumer.handlers import Handlers
from leadrelay.consumer.retry import RetryPolicy
from leadrelay.db import SessionFactory
from leadrelay.kafka import BrokerWatch, KafkaBus, stop_quietly
from leadrelay.metrics import ServiceMetrics
from leadrelay.settings import ServiceSettings

logger = logging.getLogger(__name__)

_BEST_EFFORT_SECONDS = 2.0
"""The longest the loop waits for something it can do without (the lag gauge, a courtesy commit)."""


_POLL_MS = 200
"""The longest one poll waits, so the loop sees a stop or a restart at least this often."""


async def fetch_batch(
    consumer: AIOKafkaConsumer, *, max_records: int, linger_seconds: float, cut_short: Callable[[], bool]
) -> list[Record]:
    """What one poll returns and, with a linger, what else arrives within it, up to `max_records`.

    A consumer off the speed-to-lead path lingers (`CONSUMER_LINGER_MS`) so that records arriving
    one at a time are handled in one transaction, not one each. Per partition the records stay in
    offset order. A stop or a restart (`cut_short`) ends the linger with the records in hand.
    """
    batch = await consumer.getmany(timeout_ms=_POLL_MS, max_records=max_records)
    records: list[Record] = [record for partition_records in batch.values() for record in partition_records]
    if not records or linger_seconds <= 0:
        return records
    deadline = time.monotonic() + linger_seconds
    while len(records) < max_records and not cut_short():
        left_ms = math.ceil((deadline - time.monotonic()) * 1000)
        if left_ms <= 0:
            break
        more = await consumer.getmany(timeout_ms=min(left_ms, _POLL_MS), max_records=max_records - len(records))
        records.extend(record for partition_records in more.values() for record in partition_records)
    return records


def offsets_to_commit(handled: Sequence[Record], *, assigned: Set[TopicPartition]) -> dict[TopicPartition, int]:
    """The next offset to read of each partition the handled records came from, if this member still owns it.

    A rebalance may revoke a partition while its records are being handled (or lingered over): the
    new owner reads them again and finds them processed, and an offset committed for a partition
    this member lost would fail the whole commit.
    """
    offsets: dict[TopicPartition, int] = {}
    for record in handled:
        partition = TopicPartition(record.topic, record.partition)
        if partition in assigned:
            offsets[partition] = max(offsets.get(partition, 0), record.offset + 1)
    return offsets


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
    """Consumes the topics its handlers need; commits offsets only after the handlers' transaction.

    Each fetch (up to `CONSUMER_BATCH_SIZE` records) is handled by the dispatcher in one database
    transaction; offsets are committed once it has committed, at most every
    `CONSUMER_COMMIT_INTERVAL_SECONDS`, and always before partitions are revoked and at stop. When
    the broker lost its data, the loop drops its offsets and reads the recreated topics from the
    beginning.
    """

    def __init__(
        self,
        *,
        settings: ServiceSettings,
        bus: KafkaBus,
        sessions: SessionFactory,
        handlers: Handlers,
        metrics: ServiceMetrics,
        watch: BrokerWatch | None = None,
    ) -> None:
        self._settings = settings
        self._bus = bus
        self._metrics = metrics
        self._watch = watch
        self.topics = handlers.topics
        self._stopping = asyncio.Event()
        self._restart = asyncio.Event()
        self._dispatcher = Dispatcher(
            group=self.name,
            sessions=sessions,
            handlers=handlers,
            retry=RetryPolicy(
                max_retries=settings.consumer_max_retries,
                backoff_seconds=settings.consumer_retry_backoff_seconds,
                outage_wait_seconds=settings.kafka_connect_backoff_max_seconds,
            ),
            dead_letters=DeadLetterPublisher(bus=bus, group=self.name, metrics=metrics),
            metrics=metrics,
            stopping=self._stopping,
        )
        self._consumer: AIOKafkaConsumer | None = None
        self._processed: dict[TopicPartition, int] = {}
        self._last_commit = 0.0
        self._last_commit_warning = 0.0
        self.last_poll = time.monotonic()
        self.connected = False
        if watch is not None:
            watch.on_loss(self.start_over)

    @property
    def name(self) -> str:
        """Consumer group, also the owner of processed-event records."""
        return self._settings.consumer_group

    def is_stuck(self) -> bool:
        """Whether the loop has not polled for longer than the configured threshold."""
        return time.monotonic() - self.last_poll > self._settings.consumer_stuck_after_seconds

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand, commit and leave the group."""
        self._stopping.set()

    def start_over(self, _lost_at: datetime | None = None) -> None:
        """The broker lost its data: forget our offsets (they point into logs that are gone), read from the start."""
        self._processed = {}
        self._restart.set()

    async def run(self) -> None:
        """Consume until stopped, reconnecting with backoff when the broker is unreachable."""
        backoff = 0.2
        while not self._stopping.is_set():
            consumer = AIOKafkaConsumer(
                **self._bus.consumer_options(),
                group_id=self.name,
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
                await stop_quietly(consumer)
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
                    if not self._restart.is_set():
                        await self.commit_processed()
                finally:
                    self._consumer = None
                    self._processed = {}
                    await stop_quietly(consumer, timeout=self._settings.kafka_session_timeout_ms / 1000)

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        while not self._stopping.is_set():
            if self._restart.is_set():
                await self._read_from_the_start(consumer)
            self.last_poll = time.monotonic()
            records = await fetch_batch(
                consumer,
                max_records=self._settings.consumer_batch_size,
                linger_seconds=self._settings.consumer_linger_ms / 1000,
                cut_short=lambda: self._stopping.is_set() or self._restart.is_set(),
            )
            if records and not self._restart.is_set():  # records fetched before a seek back to the start come again
                done = await self._dispatcher.dispatch(records)
                if self._restart.is_set():
                    continue  # these came from the lost logs; what was handled is deduplicated when read again
                self._processed.update(offsets_to_commit(records[:done], assigned=consumer.assignment()))
            # While a start over is pending, positions and offsets point into the lost logs: nothing to do.
            # An idle poll has nothing to commit, and the lag it would measure is the last commit's.
            due = time.monotonic() - self._last_commit >= self._settings.consumer_commit_interval_seconds
            if due and self._processed and not self._restart.is_set():
                await self.commit_processed()
                await self._update_lag(consumer)  # a gauge scraped every few seconds: as often as commits is plenty

    async def _read_from_the_start(self, consumer: AIOKafkaConsumer) -> None:
        # Staying in the group is faster than rejoining (the embedded broker makes a new member wait
        # out the old one's session). Positions and any offset committed into the recreated topics
        # are from the old logs: go back to the start, and say so to the group. While the group is
        # still rebalancing there is nothing to seek yet: try again at the next poll.
        self._processed = {}
        assignment = consumer.assignment()
        if not assignment:
            return
        await consumer.seek_to_beginning(*assignment)
        # Best effort: the group learns the new offsets at the next commit anyway.
        with contextlib.suppress(KafkaError, TimeoutError):
            async with asyncio.timeout(_BEST_EFFORT_SECONDS):
                await consumer.commit({tp: 0 for tp in assignment})
        self._restart.clear()
        logger.warning("consumer reads its topics from the start after the broker lost its data")

    async def commit_processed(self) -> None:
        """Commit offsets of records whose handling has committed."""
        if self._consumer is None or not self._processed:
            return
        offsets, self._processed = self._processed, {}
        self._last_commit = time.monotonic()
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:  # the records will be redelivered and deduplicated
            if isinstance(exc, UnknownTopicOrPartitionError) and self._watch is not None:
                self._watch.check_soon()  # a topic we read is gone: the broker may have lost its data
            if time.monotonic() - self._last_commit_warning > 10:  # once in a while, not once per batch
                self._last_commit_warning = time.monotonic()
                logger.warning("offset commit failed", extra={"error": repr(exc)})

    def forget_partition(self, tp: TopicPartition) -> None:
        """Drop state for a partition this member no longer owns."""
        self._processed.pop(tp, None)
        with contextlib.suppress(KeyError):  # no lag was recorded for it yet
            self._metrics.consumer_lag.remove(tp.topic, str(tp.partition))

    async def _update_lag(self, consumer: AIOKafkaConsumer) -> None:
        # position() waits until the partition's position is known, which right after a rebalance
        # on a recovering broker can take long: the gauge is not worth holding up the loop for.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_BEST_EFFORT_SECONDS):
                for tp in consumer.assignment():
                    highwater = consumer.highwater(tp)
                    if highwater is None:
                        continue  # nothing fetched from this partition yet
                    lag = max(highwater - await consumer.position(tp), 0)
                    self._metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
