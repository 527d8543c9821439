"""Fixtures for every test in the repository: a real broker, scratch databases, the running stack."""

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from leadrelay.broker import EmbeddedBroker
from leadrelay.testing import SERVICE_MODULES, Stack, free_port

DEFAULT_TEST_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"

DatabaseFactory = Callable[[str, str], Awaitable[str]]


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


_postgres_probe: dict[str, str | None] = {}


async def postgres_admin_url() -> str:
    """TEST_DATABASE_URL if PostgreSQL answers; skip the test (or fail, with REQUIRE_POSTGRES=1) otherwise."""
    url = os.environ.get("TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)
    if url not in _postgres_probe:
        try:
            connection = await asyncpg.connect(_asyncpg_dsn(url), timeout=3)
            await connection.close()
            _postgres_probe[url] = None
        except (OSError, asyncpg.PostgresError) as exc:
            _postgres_probe[url] = repr(exc)
    error = _postgres_probe[url]
    if error is not None:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"REQUIRE_POSTGRES=1 but PostgreSQL at TEST_DATABASE_URL is unreachable: {error}")
        pytest.skip(f"PostgreSQL unreachable ({error}); set TEST_DATABASE_URL, or REQUIRE_POSTGRES=1 to fail instead")
    return url


@pytest.fixture
async def postgres_admin_dsn() -> str:
    """asyncpg DSN of the maintenance database TEST_DATABASE_URL names (for fault injection)."""
    return _asyncpg_dsn(await postgres_admin_url())


class _PostgresPool:
    """Empty PostgreSQL databases of this test process, emptied after each test instead of dropped.

    CREATE DATABASE and DROP DATABASE each write and sync a whole database (seconds on a busy
    machine, for each of some 200 tests); renaming a used database and dropping its schemas takes
    milliseconds. The rename first: a process a test left behind cannot reconnect to the next test's
    database, as it could not after a drop. Whatever fails to empty is dropped as before.

    Pooled databases carry the test run's id in their names, and are dropped once every worker is
    done (`pytest_sessionfinish`): each DROP DATABASE forces an immediate checkpoint, which stalled
    the commits of a test still running on the other worker for seconds.
    """

    def __init__(self) -> None:
        self.free: dict[str, list[str]] = {}

    async def take(self, admin_url: str, name: str) -> str:
        """An empty database named after `name`, recycled when one is free."""
        database = f"lr_test_{name.replace('-', '_')}_{uuid4().hex[:10]}"
        connection = await asyncpg.connect(_asyncpg_dsn(admin_url))
        try:
            free = self.free.setdefault(admin_url, [])
            if free:
                await connection.execute(f'ALTER DATABASE "{free.pop()}" RENAME TO "{database}"')
            else:
                await connection.execute(f'CREATE DATABASE "{database}"')
        finally:
            await connection.close()
        return database

    async def give_back(self, admin_url: str, database: str) -> None:
        """Empty a test's database for the next one; drop it when that fails."""
        pooled = f"{_pooled_prefix()}{uuid4().hex[:10]}"
        admin = await asyncpg.connect(_asyncpg_dsn(admin_url))
        try:
            try:
                # Undo what fault-injection tests do to a database, then make sure nobody is left in it.
                await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
                await admin.execute(f'ALTER DATABASE "{database}" RESET ALL')
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", database
                )
                await _until_left(admin, database)
                await admin.execute(f'ALTER DATABASE "{database}" RENAME TO "{pooled}"')
            except asyncpg.PostgresError:
                await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
                return
            try:
                await self._empty(make_url(admin_url).set(database=pooled).render_as_string(hide_password=False))
            except (OSError, asyncpg.PostgresError):
                await admin.execute(f'DROP DATABASE IF EXISTS "{pooled}" WITH (FORCE)')
                return
        finally:
            await admin.close()
        self.free.setdefault(admin_url, []).append(pooled)

    @staticmethod
    async def _empty(url: str) -> None:
        connection = await asyncpg.connect(_asyncpg_dsn(url))
        try:
            schemas = await connection.fetch(
                "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'"
            )
            async with connection.transaction():
                for row in schemas:
                    await connection.execute(f'DROP SCHEMA "{row["nspname"]}" CASCADE')
                # As template1 has it (PostgreSQL 15+).
                await connection.execute("CREATE SCHEMA public AUTHORIZATION pg_database_owner")
                await connection.execute("GRANT USAGE ON SCHEMA public TO PUBLIC")
                await connection.execute("COMMENT ON SCHEMA public IS 'standard public schema'")
        finally:
            await connection.close()


async def _until_left(admin: asyncpg.Connection, database: str, timeout: float = 5.0) -> None:
    """Wait until terminated backends have left the database (a rename needs it unused)."""
    deadline = time.monotonic() + timeout
    query = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1"
    while True:
        if not await admin.fetchval(query, database) or time.monotonic() > deadline:
            return  # past the deadline the rename fails, and the database is dropped instead
        await asyncio.sleep(0.02)


_pool = _PostgresPool()


TEST_RUN_VARIABLE = "LEADRELAY_TEST_RUN"
"""The test run's id, set by the controlling process and inherited by its pytest-xdist workers."""


def _pooled_prefix() -> str:
    return f"lr_test_pool_{os.environ[TEST_RUN_VARIABLE]}_"


def pytest_configure(config: pytest.Config) -> None:
    """Give the run an id, before any worker starts."""
    if not hasattr(config, "workerinput"):
        os.environ[TEST_RUN_VARIABLE] = uuid4().hex[:8]


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Drop the run's pooled databases, once no test runs any more: in the controlling process."""
    if hasattr(session.config, "workerinput"):
        return
    asyncio.run(_drop_pooled(os.environ.get("TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL), _pooled_prefix()))


async def _drop_pooled(admin_url: str, prefix: str) -> None:
    try:
        connection = await asyncpg.connect(_asyncpg_dsn(admin_url), timeout=3)
    except (OSError, asyncpg.PostgresError):
        return  # no PostgreSQL: nothing was pooled
    try:
        pattern = prefix.replace("_", "\\_") + "%"
        names = await connection.fetch("SELECT datname FROM pg_database WHERE datname LIKE $1", pattern)
        for row in names:
            await connection.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
    finally:
        await connection.close()


@pytest.fixture
async def make_database(tmp_path: Path) -> AsyncIterator[DatabaseFactory]:
    """Factory of empty databases: `await make_database("sqlite" | "postgres", name)` returns a URL."""
    created: list[tuple[str, str]] = []

    async def make(backend: str, name: str) -> str:
        if backend == "sqlite":
            return f"sqlite+aiosqlite:///{tmp_path / name}.db"
        admin_url = await postgres_admin_url()
        database = await _pool.take(admin_url, name)
        created.append((admin_url, database))
        return make_url(admin_url).set(database=database).render_as_string(hide_password=False)

    yield make
    for admin_url, database in created:
        await _pool.give_back(admin_url, database)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """Storage backend a test runs on: every storage test runs on both."""
    backend_name: str = request.param
    return backend_name


@pytest.fixture
async def database_url(backend: str, make_database: DatabaseFactory) -> str:
    """One empty database on the test's backend."""
    return await make_database(backend, "db")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A fresh embedded Kafka-protocol broker (Tansu) on a free port."""
    embedded = EmbeddedBroker(free_port(), log=tmp_path / "broker.log")
    embedded.start()
    yield embedded
    embedded.stop()


@pytest.fixture
async def make_stack(tmp_path: Path, make_database: DatabaseFactory) -> AsyncIterator[Callable[..., Awaitable[Stack]]]:
    """Factory of stacks of real service processes: `await make_stack(broker, backend="sqlite")`."""
    stacks: list[Stack] = []

    async def make(
        broker: EmbeddedBroker,
        *,
        backend: str = "sqlite",
        env: dict[str, str] | None = None,
        database_urls: dict[str, str] | None = None,
    ) -> Stack:
        urls = database_urls or {name: await make_database(backend, name) for name in SERVICE_MODULES}
        stack = Stack(workdir=tmp_path, bootstrap_servers=broker.bootstrap_servers, database_urls=urls, env=env)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        await stack.close()
