"""The fetch loop while it starts over after a broker lost its data: nothing it can do without holds it up."""

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from leadrelay.consumer import EventConsumer, Handlers
from leadrelay.consumer import loop as consumer_loop
from leadrelay.kafka import KafkaBus
from leadrelay.metrics import ServiceMetrics
from leadrelay.settings import ServiceSettings

PARTITION = TopicPartition("leads.assigned", 0)


class RecoveringConsumer:
    """A consumer on a broker that came back empty: fetches return nothing, positions and commits never settle."""

    def __init__(self) -> None:
        self.polls = 0
        self.position_calls = 0
        self.commit_calls = 0
        self.seeks: list[TopicPartition] = []
        self.positions_asked_before_seeking: int | None = None
        self.on_poll: Any = None

    def assignment(self) -> set[TopicPartition]:
        return {PARTITION}

    def highwater(self, tp: TopicPartition) -> int:
        return 10

    async def position(self, tp: TopicPartition) -> int:
        self.position_calls += 1
        await asyncio.Event().wait()  # never known
        raise AssertionError("unreachable")

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commit_calls += 1
        await asyncio.Event().wait()  # the group never answers

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self.positions_asked_before_seeking = self.position_calls
        self.seeks.extend(partitions)

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
        self.polls += 1
        if self.on_poll is not None:
            self.on_poll(self.polls)
        await asyncio.sleep(0)
        return {}


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consumer_loop, "_BEST_EFFORT_SECONDS", 0.05)


def event_consumer() -> EventConsumer:
    settings = ServiceSettings(_env_file=None, consumer_commit_interval_seconds=0)  # type: ignore[call-arg]
    metrics = ServiceMetrics(CollectorRegistry())
    bus = KafkaBus(settings, metrics)
    return EventConsumer(settings=settings, bus=bus, sessions=None, handlers=Handlers(), metrics=metrics)  # type: ignore[arg-type]


@pytest.mark.usefixtures("quick")
async def test_the_lag_gauge_gives_up_on_a_position_that_is_never_known() -> None:
    consumer = RecoveringConsumer()
    async with asyncio.timeout(5):
        await event_consumer()._update_lag(consumer)  # type: ignore[arg-type]
    assert consumer.position_calls == 1


@pytest.mark.usefixtures("quick")
async def test_starting_over_seeks_to_the_start_even_when_the_group_never_takes_the_commit() -> None:
    loop, consumer = event_consumer(), RecoveringConsumer()
    loop.start_over()
    async with asyncio.timeout(5):
        await loop._read_from_the_start(consumer)  # type: ignore[arg-type]
    assert consumer.seeks == [PARTITION]
    assert consumer.commit_calls == 1
    assert not loop._restart.is_set()


@pytest.mark.usefixtures("quick")
async def test_nothing_is_measured_between_a_loss_and_the_start_over() -> None:
    loop, consumer = event_consumer(), RecoveringConsumer()

    def loss_during_the_first_poll(polls: int) -> None:
        if polls == 1:
            loop.start_over()  # the broker watch found the loss while the loop was fetching
        if polls == 2:
            loop.stop()

    consumer.on_poll = loss_during_the_first_poll
    async with asyncio.timeout(5):
        await loop._consume(consumer)  # type: ignore[arg-type]
    assert consumer.seeks == [PARTITION]  # started over at the next turn of the loop
    assert consumer.positions_asked_before_seeking == 0  # the positions in the lost logs were never waited on
