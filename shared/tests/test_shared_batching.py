"""Group commit: units queued together share one transaction; a bulk step runs once for the whole batch."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.batching import Bulk, GroupCommitter
from leadrelay.testing import Storage


class Log:
    """What the steps and units did, in order, and in which transaction."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, object]] = []

    async def step(self, session: AsyncSession, items: list[str]) -> None:
        self.entries.append(("step", list(items)))
        session.info["seen"] = list(items)

    def unit(self, name: str, *, fail: bool = False) -> Callable[[AsyncSession], Awaitable[str]]:
        async def work(session: AsyncSession) -> str:
            await session.connection()  # in the batch's transaction
            self.entries.append((name, session.info.get("seen")))
            if fail:
                raise ValueError(name)
            return name

        return work


@pytest.fixture
async def writer(sqlite_router_db: Storage) -> AsyncIterator[GroupCommitter]:
    committer = GroupCommitter(sqlite_router_db.sessions, max_batch=16)
    yield committer
    await committer.close()


async def test_a_bulk_step_runs_once_for_its_batch_in_order_before_the_work(writer: GroupCommitter) -> None:
    log = Log()
    answers = await asyncio.gather(
        writer.submit(log.unit("a"), bulk=Bulk(log.step, "a")),
        writer.submit(log.unit("plain")),
        writer.submit(log.unit("b"), bulk=Bulk(log.step, "b")),
    )

    assert answers == ["a", "plain", "b"]
    # One step with both items, then every unit, each seeing what the step did in its transaction.
    assert log.entries == [("step", ["a", "b"]), ("a", ["a", "b"]), ("plain", ["a", "b"]), ("b", ["a", "b"])]


async def test_when_a_batch_fails_each_unit_runs_its_step_again_alone(writer: GroupCommitter) -> None:
    log = Log()
    answers = await asyncio.gather(
        writer.submit(log.unit("a"), bulk=Bulk(log.step, "a")),
        writer.submit(log.unit("bad", fail=True), bulk=Bulk(log.step, "bad")),
        writer.submit(log.unit("b"), bulk=Bulk(log.step, "b")),
        return_exceptions=True,
    )

    assert (answers[0], answers[2]) == ("a", "b")
    assert isinstance(answers[1], ValueError)
    together, alone = log.entries[:3], log.entries[3:]
    assert together == [("step", ["a", "bad", "b"]), ("a", ["a", "bad", "b"]), ("bad", ["a", "bad", "b"])]
    assert alone == [
        ("step", ["a"]),
        ("a", ["a"]),
        ("step", ["bad"]),
        ("bad", ["bad"]),
        ("step", ["b"]),
        ("b", ["b"]),
    ]
