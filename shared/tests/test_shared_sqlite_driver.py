"""SQLite engines run each statement in one call on aiosqlite's thread, with the results SQLAlchemy expects."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from leadrelay.db import create_engine


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    made = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}")
    async with made.begin() as connection:
        await connection.execute(text("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL)"))
    yield made
    await made.dispose()


async def test_rows_counts_and_row_ids_come_back_with_the_statement(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        inserted = await connection.execute(text("INSERT INTO item (name) VALUES ('a')"))
        await connection.execute(text("INSERT INTO item (name) VALUES (:name)"), [{"name": "b"}, {"name": "c"}])
        returned = await connection.execute(text("INSERT INTO item (name) VALUES ('d') RETURNING id, name"))
        updated = await connection.execute(text("UPDATE item SET name = name || '!' WHERE name IN ('a', 'b')"))
        rows = (await connection.execute(text("SELECT name FROM item ORDER BY id"))).scalars().all()

    assert inserted.lastrowid == 1
    assert returned.all() == [(4, "d")]
    assert updated.rowcount == 2
    assert rows == ["a!", "b!", "c", "d"]


async def test_a_refused_statement_raises_and_leaves_the_connection_usable(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("INSERT INTO item (name) VALUES ('a')"))

    with pytest.raises(IntegrityError):
        async with engine.begin() as connection:
            await connection.execute(text("INSERT INTO item (name) VALUES ('a')"))

    async with engine.connect() as connection:
        assert (await connection.execute(text("SELECT count(*) FROM item"))).scalar_one() == 1


async def test_each_statement_is_one_call_on_aiosqlites_thread(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    original = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(getattr(fn, "__name__", repr(fn)))
        return await original(self, fn, *args, **kwargs)  # type: ignore[no-untyped-call]

    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))  # the connection's own set-up calls happen before
        monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
        await connection.execute(text("SELECT name FROM item"))
        await connection.execute(text("INSERT INTO item (name) VALUES ('a')"))
        monkeypatch.undo()
        await connection.rollback()

    assert len(calls) == 2
