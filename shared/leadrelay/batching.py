"""Group commit: many requests' small writes share one transaction, so one commit serves a batch."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Request
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.db import SessionFactory

logger = logging.getLogger(__name__)

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741
Work = Callable[[AsyncSession], Awaitable[T]]


@dataclass(frozen=True)
class Bulk(Generic[I]):
    """A first step that many units share: `run(session, items)` once for a whole batch, before any unit's work.

    For a statement that pays per call, not per row (one multi-row INSERT instead of one per unit).
    `run` must settle every item it is given: a batch that fails is retried unit by unit, and each
    unit's step runs again in its own transaction.
    """

    run: Callable[[AsyncSession, list[I]], Awaitable[None]]
    item: I


@dataclass
class _Pending:
    work: Work[Any]
    bulk: Bulk[Any] | None = None
    done: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class GroupCommitter:
    """Queues units of work and commits whatever queued up meanwhile in one transaction.

    There is no added delay: while one batch commits, the next one fills. A unit of work only
    stages changes in the session it is given (it must not commit); its caller is answered after
    the commit, so an answer always means durable. If a batch fails, each of its units is retried
    in a transaction of its own, so one bad unit cannot fail the others.
    """

    def __init__(self, sessions: SessionFactory, *, max_batch: int) -> None:
        self._sessions = sessions
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, work: Work[T], *, bulk: Bulk[Any] | None = None) -> T:
        """Run `work` (after `bulk`'s step) in the next group transaction; returns its result once committed."""
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run())
        pending = _Pending(work, bulk)
        await self._queue.put(pending)
        result: T = await asyncio.shield(pending.done)
        return result

    async def close(self) -> None:
        """Commit what is queued, then stop."""
        if self._worker is not None:
            await self._queue.join()
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._commit_batch(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _commit_batch(self, batch: list[_Pending]) -> None:
        try:
            async with self._sessions() as session:
                await _run_bulk_steps(session, batch)
                results = [await pending.work(session) for pending in batch]
                await session.commit()
        except Exception as exc:
            if len(batch) == 1:
                if not batch[0].done.done():
                    batch[0].done.set_exception(exc)
                return
            logger.warning("group commit failed, retrying its units one by one", extra={"batch": len(batch)})
            for pending in batch:
                await self._commit_batch([pending])
            return
        for pending, result in zip(batch, results, strict=True):
            if not pending.done.done():
                pending.done.set_result(result)


async def _run_bulk_steps(session: AsyncSession, batch: list[_Pending]) -> None:
    # Each step once, with its units' items in their order, in the order the steps first appear.
    steps: dict[Callable[[AsyncSession, list[Any]], Awaitable[None]], list[Any]] = {}
    for pending in batch:
        if pending.bulk is not None:
            steps.setdefault(pending.bulk.run, []).append(pending.bulk.item)
    for run, items in steps.items():
        await run(session, items)


async def get_writer(request: Request) -> GroupCommitter:
    """The process's group committer (async: a sync dependency would cost a thread hop per request)."""
    writer: GroupCommitter = request.app.state.runtime.writer
    return writer


WriterDep = Annotated[GroupCommitter, Depends(get_writer)]
