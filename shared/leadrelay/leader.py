"""One leader among the processes sharing a database, for the outbox relay and the scheduled jobs.

Each lock has a name (`outbox-relay`, `job:<name>`); different names are independent, so the relay
and each job may have different leaders. PostgreSQL: a session advisory lock held on a dedicated
autocommit connection. SQLite: `flock` on a lock file beside the database file (`<db>.<name>.lock`),
which excludes other processes and other LeaderLocks of the same process alike, since each
LeaderLock opens the file itself. An in-memory SQLite database has one process by nature: it leads.
"""

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

logger = logging.getLogger(__name__)

# The relay's key from before this module existed: replicas of two versions still elect one relay.
_FIXED_KEYS = {"outbox-relay": 0x1EAD_4E1A}


def advisory_key(name: str) -> int:
    """The PostgreSQL advisory lock key (a signed 64-bit integer) of a lock name."""
    if name in _FIXED_KEYS:
        return _FIXED_KEYS[name]
    digest = hashlib.sha256(f"leadrelay:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_file_path(database: str, name: str) -> str:
    """The lock file of a lock name beside a SQLite database file."""
    return f"{database}.{re.sub(r'[^A-Za-z0-9_.-]', '-', name)}.lock"


class LeaderLock:
    """A named lock that at most one holder in all processes sharing a database holds at a time."""

    def __init__(
        self,
        engine: AsyncEngine,
        name: str,
        *,
        retry_interval: float = 0.0,
        check_interval: float = 0.0,
        check_timeout: float = 5.0,
    ) -> None:
        """`retry_interval`: after a failed attempt, try_acquire answers False at once until it passed.

        `check_interval`: a held PostgreSQL lock is confirmed with a round trip at most this often
        (0: on every try_acquire), so a lost one may be believed held that long.
        """
        self.name = name
        self._engine = engine
        self._retry_interval = retry_interval
        self._check_interval = check_interval
        self._check_timeout = check_timeout
        self._not_before = 0.0
        self._confirmed_until = 0.0
        backend, database = engine.url.get_backend_name(), engine.url.database
        self._postgres = backend == "postgresql"
        on_file = backend == "sqlite" and database and database != ":memory:"
        self._path = lock_file_path(database, name) if on_file and database else None
        self._always_held = backend == "sqlite" and self._path is None
        self._connection: AsyncConnection | None = None
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this holder believed it held the lock at its last check."""
        return self._always_held or self._connection is not None or self._fd is not None

    async def try_acquire(self) -> bool:
        """True if this holder holds the lock now: checks a held lock is still alive, else tries to take it."""
        if self._always_held:
            return True
        if self.held:
            if await self._alive():
                return True
            logger.warning("leadership lost", extra={"lock": self.name})
            await self.release()
        if time.monotonic() < self._not_before:
            return False
        acquired = await (self._acquire_advisory() if self._postgres else self._acquire_file())
        if not acquired:
            self._not_before = time.monotonic() + self._retry_interval
        return acquired

    async def release(self) -> None:
        """Give the lock up (a no-op when not held); never raises."""
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                # A pooled connection keeps session locks: unlock explicitly before handing it back.
                async with asyncio.timeout(self._check_timeout):
                    await connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": advisory_key(self.name)})
                await connection.close()
            except Exception:
                # The connection is broken, so the server drops its lock; keep it out of the pool.
                with contextlib.suppress(Exception):
                    await connection.invalidate()
                    await connection.close()
        fd, self._fd = self._fd, None
        if fd is not None:
            # Closing the only descriptor of this open file description releases its flock.
            os.close(fd)

    async def _alive(self) -> bool:
        if self._connection is not None:
            if time.monotonic() < self._confirmed_until:
                return True
            try:  # the lock lives only as long as its connection; make sure it still does
                async with asyncio.timeout(self._check_timeout):
                    await self._connection.execute(text("SELECT 1"))
            except Exception:
                return False
            self._confirmed_until = time.monotonic() + self._check_interval
            return True
        # A lock file removed or replaced (say, `rm -rf var`) lets another process lock a new file.
        assert self._fd is not None
        assert self._path is not None
        try:
            held, current = os.fstat(self._fd), os.stat(self._path)
        except OSError:
            return False
        return (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino)

    async def _acquire_advisory(self) -> bool:
        # Autocommit: the lock connection must never sit idle inside a transaction.
        connection = await (await self._engine.connect()).execution_options(isolation_level="AUTOCOMMIT")
        try:
            async with asyncio.timeout(self._check_timeout):
                acquired = (
                    await connection.execute(
                        text("SELECT pg_try_advisory_lock(:key)"), {"key": advisory_key(self.name)}
                    )
                ).scalar()
        except BaseException:
            # Unknown whether the server granted it: only a closed session surely holds nothing.
            with contextlib.suppress(Exception):
                await connection.invalidate()
                await connection.close()
            raise
        if acquired:
            self._connection = connection
            self._confirmed_until = time.monotonic() + self._check_interval
            return True
        await connection.close()
        return False

    async def _acquire_file(self) -> bool:
        assert self._path is not None
        # A lock file is never deleted: a process could otherwise lock a file that is no longer the one.
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # LOCK_NB: returns at once, never blocks the loop
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True


async def run_as_leader(lock: LeaderLock, job: Callable[[], Awaitable[None]], *, retry_interval: float = 2.0) -> None:
    """Run `job` only while holding `lock`.

    Waits until it acquires the lock (trying every `retry_interval` seconds), runs the job and checks
    the lock as often; if leadership is lost, the job is cancelled and it waits again. Returns when
    the job returns, raises what the job raises; the lock is released either way.
    """
    try:
        while True:
            if not await _try_acquire(lock):
                await asyncio.sleep(retry_interval)
                continue
            logger.info("leading", extra={"lock": lock.name})
            task = asyncio.ensure_future(job())
            try:
                while True:
                    done, _ = await asyncio.wait({task}, timeout=retry_interval)
                    if done:
                        task.result()  # the job's own exception, if it raised
                        return
                    if not await _try_acquire(lock):
                        break
            finally:
                if not task.done():
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            logger.warning("job stopped: leadership lost", extra={"lock": lock.name})
    finally:
        await lock.release()


async def _try_acquire(lock: LeaderLock) -> bool:
    try:
        return await lock.try_acquire()
    except Exception as exc:  # database unreachable: not leading, try again later
        logger.warning("leader election failed, will retry", extra={"lock": lock.name, "error": repr(exc)})
        return False
