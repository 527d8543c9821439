"""Fixtures for the shared library's tests (the root conftest.py provides broker and databases)."""

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from leadrelay.broker import EmbeddedBroker
from leadrelay.testing import ConsumerRunner, Kafka, Storage, migrated, migrations_of

INTAKE_MIGRATIONS = migrations_of("intake")
ROUTER_MIGRATIONS = migrations_of("router")

DatabaseFactory = Callable[[str, str], Awaitable[str]]


@pytest.fixture
async def router_db(database_url: str) -> AsyncIterator[Storage]:
    """Router's schema (with the platform tables outbox and processed_event) on the test's backend."""
    async with migrated(database_url, ROUTER_MIGRATIONS) as storage:
        yield storage


@pytest.fixture
async def intake_db(database_url: str) -> AsyncIterator[Storage]:
    """Intake's schema (with api_key) on the test's backend."""
    async with migrated(database_url, INTAKE_MIGRATIONS) as storage:
        yield storage


@pytest.fixture
async def sqlite_router_db(make_database: DatabaseFactory) -> AsyncIterator[Storage]:
    """Router's schema on SQLite, for broker tests whose point is not the storage backend."""
    async with migrated(await make_database("sqlite", "router"), ROUTER_MIGRATIONS) as storage:
        yield storage


@pytest.fixture
def kafka(broker: EmbeddedBroker) -> Kafka:
    """Helper bound to the test's embedded broker."""
    return Kafka(broker.bootstrap_servers)


@pytest.fixture
async def consumers(kafka: Kafka) -> AsyncIterator[ConsumerRunner]:
    """Starts EventConsumers on the test's broker and stops them at teardown."""
    runner = ConsumerRunner(kafka)
    yield runner
    await runner.stop_all()
