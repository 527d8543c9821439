"""Async database access (SQLModel on SQLAlchemy's async engine) and Alembic migrations at start."""

import asyncio
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, TypeVar

import asyncpg
import orjson
from alembic import command
from alembic.config import Config
from fastapi import Depends, Request
from pydantic_core import PydanticUndefined
from sqlalchemy import event, false, insert, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect, ExceptionContext, make_url
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InvalidatePoolError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import SessionTransaction
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel import Session, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.leader import LeaderLock
from leadrelay.sqlite_driver import OneTripDBAPI

SessionFactory = async_sessionmaker[AsyncSession]


class DatabaseUnavailable(Exception):
    """The database cannot be reached or is overloaded: nothing was stored; the same request may succeed later.

    Raised in place of the driver's error by the engines `create_engine` makes, and only for real
    outages: a refused or dropped connection, a server shutting down or out of connection slots,
    a SQLite database locked past the busy timeout. A statement the database refuses (a value
    too long, a broken constraint) keeps SQLAlchemy's own error.
    """


def is_unavailable(error: BaseException) -> bool:
    """Whether an error means "the database is unavailable, retry later" rather than "this statement is wrong"."""
    if isinstance(error, DatabaseUnavailable | SQLAlchemyTimeoutError):  # the pool's: every connection is busy
        return True
    # A driver error wrapped outside an engine (engines raise DatabaseUnavailable themselves).
    return isinstance(error, DBAPIError) and (error.connection_invalidated or _is_outage(error.orig))


# Driver errors meaning "cannot talk to the server now", whatever the statement: asyncpg's connection
# failures (SQLSTATE class 08), operator intervention such as a shutdown (57P01-57P03), and the
# server out of connection slots (53300).
_OUTAGES = (
    OSError,  # a refused or reset socket; TimeoutError is one too
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)
_SQLITE_BUSY = ("database is locked",)  # SQLITE_BUSY after the busy timeout: another writer holds the lock


def _causes(error: BaseException | None) -> Iterator[BaseException]:
    # The error, then what it wraps: SQLAlchemy's `orig`, an adapted driver error's cause.
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = getattr(error, "orig", None) or error.__cause__


def _is_outage(error: BaseException | None) -> bool:
    for cause in _causes(error):
        if isinstance(cause, _OUTAGES):
            return True
        if isinstance(cause, sqlite3.OperationalError) and str(cause).lower().startswith(_SQLITE_BUSY):
            return True
    return False


def _raise_unavailable_on_outage(context: ExceptionContext) -> None:
    # SQLAlchemy's handle_error hook: a listener that raises replaces the error SQLAlchemy would
    # raise; the disconnected connection is still invalidated.
    error = context.original_exception
    if not isinstance(error, Exception):
        # A cancelled task (which SQLAlchemy also counts as a disconnect) must stay cancelled.
        # (Idle pooled connections are pinged in a checkout event, which does not come here.)
        return
    if context.is_disconnect or _is_outage(error):
        raise DatabaseUnavailable(f"database unavailable: {type(error).__name__}: {error}")


def _connect_or_unavailable(dialect: Dialect, _record: Any, cargs: Any, cparams: Any) -> Any:
    # Connecting goes through handle_error only for the driver's own errors, not for a refused
    # socket (OSError); and any failure to connect, whatever the cause, means the database cannot
    # serve this request now.
    try:
        return dialect.connect(*cargs, **cparams)
    except Exception as exc:
        raise DatabaseUnavailable(f"cannot connect to the database: {type(exc).__name__}: {exc}") from exc


def _report_outages(engine: AsyncEngine) -> AsyncEngine:
    event.listen(engine.sync_engine, "handle_error", _raise_unavailable_on_outage)
    event.listen(engine.sync_engine, "do_connect", _connect_or_unavailable)
    return engine


@dataclass(frozen=True)
class Refusal:
    """The database refused a value a statement carried: the statement is at fault, and retrying cannot help."""

    conflict: bool
    """Whether the value clashes with a stored one (a unique key), rather than being invalid in itself."""
    column: str | None
    """The refused column, when the database names it."""


_SQLITE_CONFLICTS = {"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"}
_SQLITE_COLUMN = re.compile(r"constraint failed: \w+\.(\w+)")
_POSTGRES_KEY_COLUMN = re.compile(r"^Key \((\w+)")


def refusal(error: BaseException) -> Refusal | None:
    """What the database refused, if `error` is a data or integrity error (SQLSTATE classes 22 and 23)."""
    if not isinstance(error, DBAPIError) or is_unavailable(error):
        return None
    # asyncpg's adapted errors arrive as plain DBAPIError; their SQLSTATE tells what they are.
    sqlstate = next((str(code) for cause in _causes(error) if (code := getattr(cause, "sqlstate", None))), "")
    if not (isinstance(error, IntegrityError | DataError) or sqlstate[:2] in {"22", "23"}):
        return None
    conflict = sqlstate == "23505"
    column = None
    for cause in _causes(error.orig):
        if isinstance(cause, sqlite3.Error):
            conflict = conflict or getattr(cause, "sqlite_errorname", "") in _SQLITE_CONFLICTS
            if match := _SQLITE_COLUMN.search(str(cause)):
                column = match[1]
        elif name := getattr(cause, "column_name", None):
            column = str(name)
        elif match := _POSTGRES_KEY_COLUMN.match(str(getattr(cause, "detail", None) or "")):
            column = match[1]
    return Refusal(conflict=conflict, column=column)


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


def json_text(value: Any) -> str:
    """A JSON column's value as stored: compact, UTF-8, object keys of any scalar type as strings."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


# JSON columns (explanations, scored leads) are encoded and decoded with orjson: with the json module
# this took about 5% of scoring's CPU.
_JSON = {"json_serializer": json_text, "json_deserializer": orjson.loads}


def create_engine(url: str) -> AsyncEngine:
    """Create the async engine for a SQLite or PostgreSQL URL (creating a SQLite file's folder)."""
    parsed = make_url(url)
    if is_sqlite(url):
        # One trip to aiosqlite's thread per statement instead of four (sqlite_driver.py).
        options: dict[str, Any] = {"connect_args": {"timeout": 30}, "module": OneTripDBAPI(), **_JSON}
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            # One connection per process: SQLite has one writer, and writers of one process waiting
            # on each other through its busy handler sleep in steps of up to 100 ms; queueing for
            # the connection in asyncio hands it over at once. So code must never hold two sessions
            # of one SQLite engine at the same time.
            options |= {"pool_size": 1, "max_overflow": 0, "pool_timeout": 60}
        engine = create_async_engine(url, hide_parameters=True, **options)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return _report_outages(engine)
    # hide_parameters: SQL errors end up in logs, and bound values may be personal data.
    engine = create_async_engine(url, pool_size=10, max_overflow=10, hide_parameters=True, **_JSON)
    _ping_idle_connections(engine)
    return _report_outages(engine)


IDLE_BEFORE_PING_SECONDS = 1.0
"""A pooled PostgreSQL connection idle this long is checked with a round trip before it is handed out."""


def _ping_idle_connections(engine: AsyncEngine) -> None:
    """Check a pooled connection at checkout when it sat idle, and replace it (and its pool) if dead.

    What `pool_pre_ping` does, except for connections in steady use: its ping is three round trips
    (BEGIN, `;`, ROLLBACK) on every checkout, 0.2 to 0.5 ms of CPU per transaction (bench/db_transaction.py).
    A connection used within the last second is handed out as it is; if the server went away in
    that second, the statement fails as DatabaseUnavailable (a 503, a consumer's retry) and the
    pool replaces every connection older than the failure.
    """
    pool = engine.sync_engine.pool

    def checked_in(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["idle_since"] = time.monotonic()

    def checked_out(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < IDLE_BEFORE_PING_SECONDS:
            return  # new, or in steady use
        try:
            ping_pooled(dbapi_connection)
        except Exception as exc:
            # The server likely restarted: the pool discards this connection and every older one,
            # and checks out a new one.
            raise InvalidatePoolError(f"an idle pooled connection failed its ping: {type(exc).__name__}") from exc

    event.listen(pool, "checkin", checked_in)
    event.listen(pool, "checkout", checked_out)


def ping_pooled(dbapi_connection: Any) -> None:
    """One liveness check of a pooled connection (runs inside SQLAlchemy's greenlet, as its pre-ping does)."""
    dbapi_connection.ping()


def new_row(table: type[SQLModel], **values: Any) -> dict[str, Any]:
    """A new row's values, defaults filled in as the model would, for a Core INSERT.

    Hot write paths insert plain rows: building a wide SQLModel table object costs about 0.1 ms
    (defaults resolved field by field, the ORM's instance state), more than the INSERT itself.
    """
    row: dict[str, Any] = {}
    for name, field in table.model_fields.items():
        if name in values:
            row[name] = values[name]
        elif field.default_factory is not None:
            row[name] = field.default_factory()  # type: ignore[call-arg]
        elif field.default is not PydanticUndefined:
            row[name] = field.default
        else:
            raise TypeError(f"{table.__name__}.{name} has no default and no value was given")
    return row


_STAGED_ROWS = "leadrelay.db.staged_rows"
"""session.info key: (table, row) pairs staged in the open transaction, inserted when it commits."""
_SAVEPOINT_MARKS = "leadrelay.db.savepoint_marks"
"""session.info key: how many rows were staged when each open savepoint began."""


def stage_insert(session: AsyncSession, table: type[SQLModel], rows: Iterable[dict[str, Any]]) -> None:
    """Insert plain rows just before the transaction commits: one statement per table, its rows in the order staged.

    The write-only rows of hot paths (outbox, timeline): cheaper than an ORM object each, which the
    flush inserts one at a time. Rows staged in a savepoint or a transaction that rolls back are
    dropped with it. They are not visible to queries before the commit.
    """
    if not session.in_transaction():
        session.sync_session.begin()  # as Session.add would: a rollback from here on drops the rows
    staged: list[tuple[Any, dict[str, Any]]] = session.info.setdefault(_STAGED_ROWS, [])
    staged.extend((table, row) for row in rows)


@event.listens_for(OrmSession, "before_commit")
def _insert_staged(session: OrmSession) -> None:
    # A savepoint's release is not the commit: its rows wait for the transaction's own.
    if session.in_nested_transaction():
        return
    staged = session.info.pop(_STAGED_ROWS, None)
    # Per table (and set of columns), not per consecutive run: a batch of leads stages a timeline
    # entry and an outbox row each in turn, which runs of one would insert a statement per row.
    by_table: dict[tuple[Any, tuple[str, ...]], list[dict[str, Any]]] = {}
    for table, row in staged or ():
        by_table.setdefault((table, tuple(row)), []).append(row)
    if not by_table:
        return
    # On the Connection, not through the session: the ORM's bulk INSERT costs about half again as much per row.
    connection = session.connection()
    for (table, _columns), rows in by_table.items():
        connection.execute(insert(table), rows)


@event.listens_for(OrmSession, "after_transaction_create")
def _mark_savepoint(session: OrmSession, transaction: SessionTransaction) -> None:
    if transaction.nested:
        session.info.setdefault(_SAVEPOINT_MARKS, {})[transaction] = len(session.info.get(_STAGED_ROWS, ()))


@event.listens_for(OrmSession, "after_soft_rollback")
def _drop_rolled_back(session: OrmSession, previous_transaction: SessionTransaction) -> None:
    # Rows staged inside a savepoint that rolled back never happened, like the rest of its work.
    if previous_transaction.nested:
        staged_before = session.info.get(_SAVEPOINT_MARKS, {}).pop(previous_transaction, None)
        if staged_before is not None:
            del session.info.get(_STAGED_ROWS, [])[staged_before:]


@event.listens_for(OrmSession, "after_transaction_end")
def _forget_transaction(session: OrmSession, transaction: SessionTransaction) -> None:
    # A savepoint's mark is kept until the transaction ends (SQLAlchemy ends a savepoint before it
    # reports its rollback); committed rows were inserted already, anything left never committed.
    if transaction.parent is None and not transaction.nested:
        session.info.pop(_STAGED_ROWS, None)
        session.info.pop(_SAVEPOINT_MARKS, None)


T = TypeVar("T")


def per_dialect(build: Callable[[ModuleType], T]) -> dict[str, T]:
    """A statement built once for each database LeadRelay runs on, by dialect name.

    For hot paths that need a dialect's own SQL (ON CONFLICT) and run it with the rows as
    parameters: a statement built per call with its values inline is compiled anew each time.
    """
    return {dialect.dialect.name: build(dialect) for dialect in (postgresql, sqlite)}


def upsert_insert(session: AsyncSession, table: Any) -> Any:
    """An INSERT that takes `on_conflict_do_nothing` and `on_conflict_do_update`, in the session's dialect."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


async def insert_unless_taken(session: AsyncSession, rows: Iterable[SQLModel]) -> bool:
    """Insert rows in a savepoint; False, with nothing inserted, when a unique key is already taken.

    The way two replicas racing on one lead agree: the loser rolls back to the savepoint and
    reads the winner's row.
    """
    try:
        async with session.begin_nested():
            session.add_all(rows)
    except IntegrityError:
        return False
    return True


_AFTER_COMMIT = "leadrelay.db.after_commit"
"""session.info key: callbacks to run once the open transaction commits."""
_NOTIFY = "leadrelay.db.notify"
"""session.info key: PostgreSQL channels to NOTIFY when the open transaction commits."""


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run `callback` once the session's transaction commits; never if it rolls back.

    So metrics count only what was committed. Kept in `session.info` for the session-wide listeners
    below: registering a listener per transaction took about 5% of a one-lead handler's CPU.
    """
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)


def notify_on_commit(session: AsyncSession, channel: str) -> None:
    """On PostgreSQL, NOTIFY `channel` in this transaction (once however often asked): listeners in every
    process hear it once it commits."""
    if session.get_bind().dialect.name == "postgresql":
        session.info.setdefault(_NOTIFY, set()).add(channel)


@event.listens_for(OrmSession, "before_commit")
def _notify_channels(session: OrmSession) -> None:
    if session.in_nested_transaction():  # a savepoint's release is not the commit
        return
    for channel in sorted(session.info.pop(_NOTIFY, ())):
        session.execute(text(f"NOTIFY {channel}"))


@event.listens_for(OrmSession, "after_commit")
def _run_after_commit(session: OrmSession) -> None:
    if session.in_nested_transaction():
        return
    for callback in session.info.pop(_AFTER_COMMIT, ()):
        callback()


@event.listens_for(OrmSession, "after_soft_rollback")
def _forget_after_commit(session: OrmSession, previous_transaction: SessionTransaction) -> None:
    if previous_transaction.parent is None and not previous_transaction.nested:
        session.info.pop(_AFTER_COMMIT, None)
        session.info.pop(_NOTIFY, None)


def create_session_factory(engine: AsyncEngine) -> SessionFactory:
    """Session factory whose objects stay usable after commit.

    Each factory gets its own session class, so session events (the outbox's wake-up after commit)
    registered for one service's factory never fire for another's.
    """
    session_class = type("ServiceSession", (Session,), {})
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False, sync_session_class=session_class)


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


_WRITING = "leadrelay.writing"
"""session.info key: the transaction that already holds SQLite's writer lock."""


async def begin_writing(session: AsyncSession, table: type[SQLModel]) -> None:
    """On SQLite, make the transaction a writer now, so what it reads next is the latest and stays so until it ends.

    SQLite ignores SELECT ... FOR UPDATE, and pysqlite begins a transaction only at its first write:
    a read before that write may be overtaken by another worker process's commit, and a merge made
    from it would lose that commit. A write that matches nothing takes SQLite's one writer lock
    (waiting for another writer to commit), as BEGIN IMMEDIATE would. PostgreSQL needs nothing: its
    row locks do this per row.
    """
    connection = await session.connection()
    if connection.dialect.name != "sqlite":
        return
    transaction = session.sync_session.get_transaction()
    # Once per transaction is enough: the lock is held until it ends (a group commit stages many leads).
    if transaction is not None and session.info.get(_WRITING) is transaction:
        return
    [key] = table.__table__.primary_key.columns  # type: ignore[attr-defined]
    await connection.execute(update(table).where(false()).values({key.name: key}))
    session.info[_WRITING] = transaction
