"""One leader per database and lock name, on SQLite (file lock) and PostgreSQL (advisory lock)."""

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
from fastapi import FastAPI
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from leadrelay.db import DatabaseUnavailable, create_engine
from leadrelay.leader import LeaderLock, lock_file_path, run_as_leader
from leadrelay.runtime import ServiceRuntime
from leadrelay.service import ServiceSpec, create_service_app
from leadrelay.settings import ServiceSettings
from leadrelay.testing import free_port, migrations_of, wait_until

INTAKE_MIGRATIONS = migrations_of("intake")
ROUTER_MIGRATIONS = migrations_of("router")

EngineFactory = Callable[[], AsyncEngine]
Attempts = Callable[[str], list[int]]


@pytest.fixture
def attempts(monkeypatch: pytest.MonkeyPatch) -> Attempts:
    """Counts try_acquire calls per LeaderLock: `attempts(name)` lists the counts of each lock of that name."""
    counts: dict[int, tuple[str, list[int]]] = {}
    original = LeaderLock.try_acquire

    async def counted(self: LeaderLock) -> bool:
        counts.setdefault(id(self), (self.name, [0]))[1][0] += 1
        return await original(self)

    monkeypatch.setattr(LeaderLock, "try_acquire", counted)
    return lambda name: [count[0] for lock_name, count in counts.values() if lock_name == name]


@pytest.fixture
async def engines(database_url: str) -> AsyncIterator[EngineFactory]:
    """Separate engines on the test's database: as many processes' connection pools."""
    created: list[AsyncEngine] = []

    def make() -> AsyncEngine:
        created.append(create_engine(database_url))
        return created[-1]

    yield make
    for engine in created:
        await engine.dispose()


async def test_one_holder_at_a_time_and_the_next_takes_over_after_release(engines: EngineFactory) -> None:
    first, second = LeaderLock(engines(), "outbox-relay"), LeaderLock(engines(), "outbox-relay")
    try:
        assert await first.try_acquire()
        assert not await second.try_acquire()
        assert await first.try_acquire()  # still held: the check keeps it
        assert not await second.try_acquire()
        await first.release()
        assert not first.held
        assert await second.try_acquire()
        assert not await first.try_acquire()
    finally:
        await first.release()
        await second.release()


async def test_two_locks_on_one_engine_exclude_each_other(engines: EngineFactory) -> None:
    # Two holders in one process: a file lock is per open file, an advisory lock per connection.
    engine = engines()
    first, second = LeaderLock(engine, "job:scan"), LeaderLock(engine, "job:scan")
    try:
        assert await first.try_acquire()
        assert not await second.try_acquire()
        await first.release()
        assert await second.try_acquire()
    finally:
        await first.release()
        await second.release()


async def test_names_are_independent(engines: EngineFactory) -> None:
    engine = engines()
    relay, scan, prune = (LeaderLock(engine, name) for name in ("outbox-relay", "job:scan", "job:prune"))
    others = [LeaderLock(engines(), name) for name in ("outbox-relay", "job:scan", "job:prune")]
    try:
        assert [await lock.try_acquire() for lock in (relay, scan, prune)] == [True, True, True]
        assert [await lock.try_acquire() for lock in others] == [False, False, False]
    finally:
        for lock in (relay, scan, prune, *others):
            await lock.release()


async def test_a_failed_attempt_is_not_repeated_before_the_retry_interval(engines: EngineFactory) -> None:
    holder, standby = LeaderLock(engines(), "job:scan"), LeaderLock(engines(), "job:scan", retry_interval=60)
    try:
        assert await holder.try_acquire()
        assert not await standby.try_acquire()
        await holder.release()
        assert not await standby.try_acquire()  # answered at once, without touching the database
    finally:
        await holder.release()
        await standby.release()


async def test_in_memory_sqlite_just_leads() -> None:
    engine = create_engine("sqlite+aiosqlite:///:memory:")
    try:
        first, second = LeaderLock(engine, "outbox-relay"), LeaderLock(engine, "outbox-relay")
        assert await first.try_acquire()
        assert await second.try_acquire()
        await first.release()
    finally:
        await engine.dispose()


HOLDER = """
import asyncio, sys
from leadrelay.db import create_engine
from leadrelay.leader import LeaderLock

async def main():
    lock = LeaderLock(create_engine(sys.argv[1]), "outbox-relay")
    print("held" if await lock.try_acquire() else "refused", flush=True)
    await asyncio.to_thread(sys.stdin.read)

asyncio.run(main())
"""


async def test_a_holder_in_another_process_excludes_until_it_dies(database_url: str, engines: EngineFactory) -> None:
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, database_url, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    local = LeaderLock(engines(), "outbox-relay")
    try:
        assert holder.stdout is not None
        assert await asyncio.wait_for(holder.stdout.readline(), 30) == b"held\n"
        assert not await local.try_acquire()
        holder.kill()  # no release: the server (or the kernel, for a file lock) drops it with the process
        await asyncio.wait_for(holder.wait(), 10)
        await wait_until(local.try_acquire, timeout=10, what="the lock to pass to this process")
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()
        await local.release()


async def _take_over_from(holder: LeaderLock, database_url: str, engine: AsyncEngine, taker: LeaderLock) -> None:
    """Make `holder` lose its lock and `taker` hold it: a broken lock connection, a replaced lock file."""
    if make_url(database_url).get_backend_name() == "sqlite":
        os.unlink(lock_file_path(str(make_url(database_url).database), holder.name))  # the holder keeps the old file
        assert await taker.try_acquire()
        return

    async def holder_cut_off() -> bool:
        # Terminate every other session, then try: the holder may win a round by reconnecting first.
        async with engine.connect() as connection:
            await connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        try:
            return await taker.try_acquire()
        except DatabaseUnavailable:
            # The taker's pooled connection, used within the last second so not pinged, was one of those
            # terminated: it fails once and its pool replaces it (run_as_leader retries the same way).
            return False

    await wait_until(holder_cut_off, timeout=10, what="another holder to take the lock")


async def test_a_holder_that_lost_its_lock_says_so(database_url: str, engines: EngineFactory) -> None:
    holder, taker = LeaderLock(engines(), "job:scan"), LeaderLock(engines(), "job:scan")
    try:
        assert await holder.try_acquire()
        await _take_over_from(holder, database_url, engines(), taker)
        assert not await holder.try_acquire()
        assert not holder.held
    finally:
        await holder.release()
        await taker.release()


async def test_a_held_lock_is_confirmed_at_most_once_per_check_interval(
    database_url: str, engines: EngineFactory
) -> None:
    engine = engines()
    holder, taker = LeaderLock(engine, "job:confirm", check_interval=0.5), LeaderLock(engines(), "job:confirm")
    statements: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    try:
        assert await holder.try_acquire()
        confirmed = len(statements)
        for _ in range(20):
            assert await holder.try_acquire()
        assert len(statements) == confirmed  # no round trip within the interval

        await _take_over_from(holder, database_url, engines(), taker)

        async def loss_noticed() -> bool:
            return not await holder.try_acquire()

        await wait_until(loss_noticed, timeout=5, interval=0.1, what="the holder to notice it lost the lock")
        assert not holder.held
    finally:
        await holder.release()
        await taker.release()


async def test_job_runs_on_one_leader_and_moves_when_the_leader_stops(
    engines: EngineFactory, attempts: Attempts
) -> None:
    running: list[str] = []

    def job(who: str) -> Callable[[], asyncio.Future[None]]:
        async def work() -> None:
            running.append(who)
            try:
                await asyncio.Event().wait()
            finally:
                running.remove(who)

        return lambda: asyncio.ensure_future(work())

    runners = {
        who: asyncio.create_task(run_as_leader(LeaderLock(engines(), "job:scan"), job(who), retry_interval=0.05))
        for who in ("a", "b")
    }
    try:

        async def both_tried_thrice() -> bool:
            counts = attempts("job:scan")
            return len(counts) == 2 and min(counts) >= 3 and len(running) == 1

        await wait_until(both_tried_thrice, timeout=10, what="both runners to try the lock three times")
        assert len(running) == 1
        leader = running[0]
        runners[leader].cancel()
        await asyncio.gather(runners[leader], return_exceptions=True)

        async def moved() -> bool:
            return running == ["b" if leader == "a" else "a"]

        await wait_until(moved, timeout=10, what="the job to move to the other runner")
    finally:
        for runner in runners.values():
            runner.cancel()
        await asyncio.gather(*runners.values(), return_exceptions=True)


async def test_job_is_cancelled_when_leadership_is_lost(database_url: str, engines: EngineFactory) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def job() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    lock, taker = LeaderLock(engines(), "job:scan"), LeaderLock(engines(), "job:scan")
    runner = asyncio.create_task(run_as_leader(lock, job, retry_interval=0.05))
    try:
        await asyncio.wait_for(started.wait(), 10)
        await _take_over_from(lock, database_url, engines(), taker)
        await asyncio.wait_for(cancelled.wait(), 10)
        assert not runner.done()  # back to waiting for leadership
        assert not lock.held
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await taker.release()


async def test_a_job_that_returns_or_raises_releases_the_lock(engines: EngineFactory) -> None:
    engine = engines()
    lock, other = LeaderLock(engine, "job:once"), LeaderLock(engine, "job:once")

    async def done() -> None:
        pass

    async def broken() -> None:
        raise RuntimeError("boom")

    try:
        await run_as_leader(lock, done, retry_interval=0.05)
        assert await other.try_acquire()
        await other.release()
        with pytest.raises(RuntimeError, match="boom"):
            await run_as_leader(lock, broken, retry_interval=0.05)
        assert await other.try_acquire()
    finally:
        await other.release()


@asynccontextmanager
async def running_service(app: FastAPI) -> AsyncIterator[None]:
    async with app.router.lifespan_context(app):
        yield


async def test_service_jobs_run_on_one_process_and_move_when_it_stops(database_url: str, attempts: Attempts) -> None:
    # Two processes of one service sharing a database: each job runs on one, until that one stops.
    running: list[ServiceRuntime] = []

    async def scan(runtime: ServiceRuntime) -> None:
        running.append(runtime)
        try:
            await asyncio.Event().wait()
        finally:
            running.remove(runtime)

    spec = ServiceSpec(title="test", description="test", migrations_dir=ROUTER_MIGRATIONS, jobs=[scan])
    settings = ServiceSettings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",  # nothing to publish, nothing to consume
        leader_retry_interval_seconds=0.05,
    )
    apps = [create_service_app(spec, settings), create_service_app(spec, settings)]
    stacks = [AsyncExitStack(), AsyncExitStack()]
    try:
        for app, stack in zip(apps, stacks, strict=True):
            await stack.enter_async_context(running_service(app))

        async def both_tried_thrice() -> bool:
            counts = attempts("job:scan")
            return len(counts) == 2 and min(counts) >= 3 and len(running) == 1

        await wait_until(both_tried_thrice, timeout=10, what="both processes to try the lock three times")
        assert len(running) == 1
        leader = [app.state.runtime for app in apps].index(running[0])
        await stacks[leader].aclose()  # the leader stops; its job is cancelled and its locks released

        async def moved() -> bool:
            return [r is apps[1 - leader].state.runtime for r in running] == [True]

        await wait_until(moved, timeout=10, what="the job to move to the other process")
    finally:
        for stack in stacks:
            await stack.aclose()


def test_lock_files_sit_beside_the_database() -> None:
    assert lock_file_path("/var/lib/intake.db", "job:redrive_stuck_leads") == (
        "/var/lib/intake.db.job-redrive_stuck_leads.lock"
    )
    assert os.path.dirname(lock_file_path("./var/intake.db", "outbox-relay")) == "./var"


MIGRATOR = """
import asyncio, os, sys
from pathlib import Path
from leadrelay.db import create_engine, run_migrations

async def migrate(url):
    engine = create_engine(url)
    await run_migrations(engine, Path(sys.argv[2]))
    await engine.dispose()

async def main():
    await migrate(f"{sys.argv[1]}.warm-{os.getpid()}.db")  # imports and migration scripts loaded beforehand
    print("ready", flush=True)
    sys.stdin.readline()
    await migrate(sys.argv[1])

asyncio.run(main())
"""


async def test_processes_starting_together_on_one_sqlite_file_take_turns_migrating(
    make_database: Callable[[str, str], Awaitable[str]],
) -> None:
    # Several intake workers on a fresh file: without turns, all but one fail with "table ... already exists".
    url = await make_database("sqlite", "fresh")
    migrators = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            MIGRATOR,
            url,
            str(INTAKE_MIGRATIONS),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(4)
    ]
    try:
        for migrator in migrators:
            assert migrator.stdout is not None
            assert await asyncio.wait_for(migrator.stdout.readline(), 60) == b"ready\n"
        results = await asyncio.gather(*(migrator.communicate(b"go\n") for migrator in migrators))
        errors = [err.decode()[-300:] for _, err in results]
        assert [migrator.returncode for migrator in migrators] == [0, 0, 0, 0], errors
    finally:
        for migrator in migrators:
            if migrator.returncode is None:
                migrator.kill()
                await migrator.wait()
