"""Fixtures for every test in the repository: a real broker, scratch databases, the running stack."""

import os
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


@pytest.fixture
async def make_database(tmp_path: Path) -> AsyncIterator[DatabaseFactory]:
    """Factory of empty databases: `await make_database("sqlite" | "postgres", name)` returns a URL."""
    created: list[tuple[str, str]] = []

    async def make(backend: str, name: str) -> str:
        if backend == "sqlite":
            return f"sqlite+aiosqlite:///{tmp_path / name}.db"
        admin_url = await postgres_admin_url()
        database = f"lr_test_{name.replace('-', '_')}_{uuid4().hex[:10]}"
        connection = await asyncpg.connect(_asyncpg_dsn(admin_url))
        try:
            await connection.execute(f'CREATE DATABASE "{database}"')
        finally:
            await connection.close()
        created.append((admin_url, database))
        return make_url(admin_url).set(database=database).render_as_string(hide_password=False)

    yield make
    for admin_url, database in created:
        connection = await asyncpg.connect(_asyncpg_dsn(admin_url))
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await connection.close()


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
