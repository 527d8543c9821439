"""Async database access (SQLModel on SQLAlchemy's async engine) and Alembic migrations at start."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from alembic import command
from alembic.config import Config
from fastapi import Depends, Request
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.leader import LeaderLock

SessionFactory = async_sessionmaker[AsyncSession]


def is_unavailable(error: BaseException) -> bool:
    """Whether an error means the database is unreachable or overloaded, rather than a bad statement.

    Plain DBAPIError is what SQLAlchemy raises for driver errors it cannot classify, such as
    asyncpg refusing a connection to a database that does not accept any.
    """
    return isinstance(error, OperationalError | InterfaceError | SQLAlchemyTimeoutError | OSError | TimeoutError) or (
        type(error) is DBAPIError
    )


def is_sqlite(url: str) -> bool:
    """Whether a database URL points at SQLite."""
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers proceed during a write; the busy timeout makes concurrent writers wait
    # instead of failing; NORMAL is durable in WAL mode except on power loss of the OS.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_engine(url: str) -> AsyncEngine:
    """Create the async engine for a SQLite or PostgreSQL URL (creating a SQLite file's folder)."""
    parsed = make_url(url)
    if is_sqlite(url):
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # hide_parameters: SQL errors end up in logs, and bound values may be personal data.
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True, hide_parameters=True)


def create_session_factory(engine: AsyncEngine) -> SessionFactory:
    """Session factory whose objects stay usable after commit."""
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


def _upgrade(connection: Connection, config: Config) -> None:
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


# Any constant; replicas of one service starting together take turns migrating their database.
_MIGRATION_LOCK_KEY = 0x1EAD_0001


async def run_migrations(engine: AsyncEngine, migrations_dir: Path) -> None:
    """Bring the database to the latest revision of a service's Alembic migrations."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    # On SQLite, processes starting together on one file (intake's workers) take turns through a file lock.
    turn = LeaderLock(engine, "migrations") if is_sqlite(str(engine.url)) else None
    while turn and not await turn.try_acquire():  # noqa: ASYNC110  (a lock held by another process: nothing to await)
        await asyncio.sleep(0.05)
    try:
        async with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            await connection.run_sync(_upgrade, config)
    finally:
        if turn:
            await turn.release()


async def ping(engine: AsyncEngine, timeout: float = 2.0) -> bool:
    """Whether the database answers a trivial query in time."""
    try:
        async with asyncio.timeout(timeout), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception:  # any failure means "not reachable" for a readiness probe
        return False
    return True


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """Request-scoped session from the service runtime."""
    async with request.app.state.runtime.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
