"""Outages raise DatabaseUnavailable (503, retry); values the database refuses stay client errors (4xx)."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from leadrelay import db
from leadrelay.db import DatabaseUnavailable, Refusal, create_engine, is_unavailable, refusal
from leadrelay.problems import CONFLICT_PROBLEM, PROBLEM_JSON, VALIDATION_PROBLEM, install_problem_handlers
from leadrelay.testing import free_port

DatabaseFactory = Callable[[str, str], Awaitable[str]]

metadata = sa.MetaData()
signups = sa.Table(
    "signup",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(50), nullable=False, unique=True),
    sa.Column("country", sa.String(2)),
)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine as services make it, on the test's backend, with a `signup` table."""
    engine = create_engine(database_url)
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


def signup_client(engine: AsyncEngine) -> httpx.AsyncClient:
    """Client of a tiny app that inserts whatever it is sent, so only the database judges the values."""
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/signups", status_code=201)
    async def create(body: dict[str, Any]) -> dict[str, str]:
        async with engine.begin() as connection:
            await connection.execute(signups.insert().values(**body))
        return {"status": "stored"}

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def _insert(engine: AsyncEngine, **values: Any) -> None:
    async with engine.begin() as connection:
        await connection.execute(signups.insert().values(**values))


async def test_broken_constraints_are_refusals_not_outages(engine: AsyncEngine) -> None:
    await _insert(engine, email="ada@example.com")
    with pytest.raises(IntegrityError) as duplicate:
        await _insert(engine, email="ada@example.com")
    with pytest.raises(IntegrityError) as missing:
        await _insert(engine, email=None)

    assert not is_unavailable(duplicate.value)
    assert not is_unavailable(missing.value)
    assert refusal(duplicate.value) == Refusal(conflict=True, column="email")
    assert refusal(missing.value) == Refusal(conflict=False, column="email")


async def test_refused_values_answer_4xx_naming_the_field(engine: AsyncEngine) -> None:
    async with signup_client(engine) as client:
        assert (await client.post("/signups", json={"email": "ada@example.com"})).status_code == 201
        duplicate = await client.post("/signups", json={"email": "ada@example.com"})
        missing = await client.post("/signups", json={"country": "GB"})

    assert duplicate.status_code == 409
    assert duplicate.headers["content-type"] == PROBLEM_JSON
    assert duplicate.json()["type"] == CONFLICT_PROBLEM
    assert [error["field"] for error in duplicate.json()["errors"]] == ["email"]
    assert "ada@example.com" not in duplicate.text
    assert missing.status_code == 422
    assert missing.json()["type"] == VALIDATION_PROBLEM
    assert [error["field"] for error in missing.json()["errors"]] == ["email"]
    for response in (duplicate, missing):
        assert "retry-after" not in response.headers


@pytest.mark.postgres
async def test_value_postgresql_refuses_answers_422_not_503(make_database: DatabaseFactory) -> None:
    # What made a 3-character country (ISO "ßa" upper-cases to "SSA") answer 503: asyncpg's data
    # errors reach SQLAlchemy as a plain DBAPIError, which counted as "database unavailable".
    engine = create_engine(await make_database("postgres", "refused"))
    try:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
        with pytest.raises(sa.exc.DBAPIError) as too_long:
            await _insert(engine, email="ada@example.com", country="SSA")
        assert not is_unavailable(too_long.value)
        assert refusal(too_long.value) is not None

        async with signup_client(engine) as client:
            response = await client.post("/signups", json={"email": "ada@example.com", "country": "SSA"})
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == PROBLEM_JSON
        assert "retry-after" not in response.headers
    finally:
        await engine.dispose()


async def test_unreachable_server_is_unavailable_and_answers_503() -> None:
    engine = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere")  # nothing listens
    try:
        with pytest.raises(DatabaseUnavailable) as refused:
            await _insert(engine, email="ada@example.com")
        assert isinstance(refused.value.__cause__, OSError)
        assert is_unavailable(refused.value)

        async with signup_client(engine) as client:
            response = await client.post("/signups", json={"email": "ada@example.com"})
        assert response.status_code == 503
        assert response.headers["content-type"] == PROBLEM_JSON
        assert response.headers["retry-after"] == "5"
    finally:
        await engine.dispose()


async def _backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one())


@pytest.mark.postgres
async def test_terminated_connection_is_unavailable_and_the_pool_recovers(
    make_database: DatabaseFactory, postgres_admin_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(await make_database("postgres", "terminated"))
    admin = await asyncpg.connect(postgres_admin_dsn)
    try:
        async with engine.connect() as connection:
            pid = (await connection.execute(sa.text("SELECT pg_backend_pid()"))).scalar()
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
            with pytest.raises(DatabaseUnavailable):
                await connection.execute(sa.text("SELECT 1"))

        idle = await _backend_pid(engine)  # back in the pool, then killed there
        await admin.execute("SELECT pg_terminate_backend($1)", idle)
        # A connection idle past the threshold is pinged at checkout, found dead and replaced: no
        # error reaches the caller.
        monkeypatch.setattr(db, "IDLE_BEFORE_PING_SECONDS", 0.0)
        assert await _backend_pid(engine) not in {pid, idle}
    finally:
        await admin.close()
        await engine.dispose()


@pytest.mark.postgres
async def test_a_connection_in_steady_use_is_not_pinged_and_one_idle_is(
    make_database: DatabaseFactory, postgres_admin_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(await make_database("postgres", "pinged"))
    pings: list[object] = []
    real_ping = db.ping_pooled
    monkeypatch.setattr(db, "ping_pooled", lambda connection: (pings.append(connection), real_ping(connection)))
    admin = await asyncpg.connect(postgres_admin_dsn)
    try:
        first = await _backend_pid(engine)
        for _ in range(20):
            assert await _backend_pid(engine) == first  # the same connection, reused at once
        assert pings == []

        monkeypatch.setattr(db, "IDLE_BEFORE_PING_SECONDS", 0.0)  # now every checkout has waited long enough
        assert await _backend_pid(engine) == first
        assert len(pings) == 1

        # Killed while in steady use (no ping): the statement fails as an outage, then the pool recovers.
        monkeypatch.setattr(db, "IDLE_BEFORE_PING_SECONDS", 3600.0)
        await admin.execute("SELECT pg_terminate_backend($1)", first)
        with pytest.raises(DatabaseUnavailable):
            await _backend_pid(engine)
        assert await _backend_pid(engine) != first
    finally:
        await admin.close()
        await engine.dispose()


@pytest.mark.postgres
async def test_database_refusing_connections_is_unavailable(
    make_database: DatabaseFactory, postgres_admin_dsn: str
) -> None:
    url = await make_database("postgres", "closed")
    admin = await asyncpg.connect(postgres_admin_dsn)
    engine = create_engine(url)
    try:
        await admin.execute(f'ALTER DATABASE "{make_url(url).database}" ALLOW_CONNECTIONS false')
        with pytest.raises(DatabaseUnavailable):
            await _insert(engine, email="ada@example.com")
    finally:
        await admin.execute(f'ALTER DATABASE "{make_url(url).database}" ALLOW_CONNECTIONS true')
        await admin.close()
        await engine.dispose()


@pytest.mark.postgres
async def test_cancelled_query_stays_cancelled(make_database: DatabaseFactory) -> None:
    # SQLAlchemy counts a cancelled statement as a disconnect; it must not turn into an outage.
    engine = create_engine(await make_database("postgres", "cancelled"))
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2), engine.connect() as connection:
                await connection.execute(sa.text("SELECT pg_sleep(5)"))
    finally:
        await engine.dispose()


async def test_sqlite_locked_past_the_busy_timeout_is_unavailable(make_database: DatabaseFactory) -> None:
    url = await make_database("sqlite", "locked")
    holder, waiter = create_engine(url), create_engine(url)
    try:
        async with holder.begin() as connection:
            await connection.run_sync(metadata.create_all)
        async with holder.connect() as writing:
            await writing.exec_driver_sql("BEGIN IMMEDIATE")
            async with waiter.connect() as blocked:
                await blocked.exec_driver_sql("PRAGMA busy_timeout=50")
                with pytest.raises(DatabaseUnavailable):
                    await blocked.execute(signups.insert().values(email="ada@example.com"))
    finally:
        await holder.dispose()
        await waiter.dispose()
