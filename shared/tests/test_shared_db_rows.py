"""Hot paths: rows with the model's defaults, compact JSON, SQLite's writer lock once, one claim text."""

import json
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Field, SQLModel

from leadrelay.db import begin_writing, create_engine, create_session_factory, json_text, new_row
from leadrelay.events import utcnow
from leadrelay.idempotency import claim_many
from leadrelay.outbox import OutboxMessage
from leadrelay.testing import Storage


class _Widget(SQLModel):
    """Not a table: new_row only reads the fields."""

    name: str
    size: int = 3
    tags: list[str] = Field(default_factory=list)
    made_at: datetime = Field(default_factory=utcnow)


def test_new_row_fills_defaults_as_the_model_would() -> None:
    row = new_row(_Widget, name="gear", size=5)
    assert row["name"] == "gear"
    assert row["size"] == 5
    assert row["tags"] == []
    assert isinstance(row["made_at"], datetime)
    assert row == {**_Widget(name="gear", size=5).model_dump(), "made_at": row["made_at"]}


def test_new_row_calls_each_factory_per_row() -> None:
    first, second = new_row(_Widget, name="a"), new_row(_Widget, name="b")
    first["tags"].append("x")
    assert second["tags"] == []


def test_new_row_refuses_a_missing_required_value() -> None:
    with pytest.raises(TypeError, match=r"_Widget\.name"):
        new_row(_Widget, size=1)


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A SQLite engine as services make it, with the outbox table."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'rows.db'}")
    async with engine.begin() as connection:
        await connection.run_sync(lambda sync: SQLModel.metadata.create_all(sync, tables=[OutboxMessage.__table__]))  # type: ignore[attr-defined]
    yield engine
    await engine.dispose()


async def test_sqlite_writer_lock_is_taken_once_per_transaction(sqlite_engine: AsyncEngine) -> None:
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(sqlite_engine.sync_engine, "before_cursor_execute", record)
    sessions = create_session_factory(sqlite_engine)
    async with sessions() as session:
        for _ in range(3):
            await begin_writing(session, OutboxMessage)
            await session.exec(select(OutboxMessage.id))  # type: ignore[call-overload]
        assert sum(statement.startswith("UPDATE") for statement in statements) == 1
        await session.commit()
        # A new transaction must take the lock again.
        await begin_writing(session, OutboxMessage)
        assert sum(statement.startswith("UPDATE") for statement in statements) == 2
        await session.rollback()


def test_json_columns_are_stored_as_the_json_module_would_read_them() -> None:
    value = {"points": [1, 2.5, None, True], "name": "Zoë 🚀", 3: {"nested": "value"}}
    stored = json_text(value)
    assert json.loads(stored) == {"points": [1, 2.5, None, True], "name": "Zoë 🚀", "3": {"nested": "value"}}
    assert "Zoë 🚀" in stored  # UTF-8, not \\u escapes


async def test_the_claim_inserts_only_new_ids_and_on_postgresql_with_one_text_whatever_the_batch(
    router_db: Storage,
) -> None:
    texts: list[str] = []

    def before_cursor_execute(_connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "INSERT INTO processed_event" in statement:
            texts.append(statement)

    fresh = []
    event.listen(router_db.engine.sync_engine, "before_cursor_execute", before_cursor_execute)
    try:
        for wanted in (["e1"], ["e1", "e2", "e2", "e3"], [f"e{n}" for n in range(6)]):
            async with router_db.sessions() as session:
                fresh.append(await claim_many(session, consumer="reader", event_ids=wanted))
                await session.commit()
    finally:
        event.remove(router_db.engine.sync_engine, "before_cursor_execute", before_cursor_execute)

    assert fresh == [{"e1"}, {"e2", "e3"}, {"e0", "e4", "e5"}]
    if router_db.engine.dialect.name == "postgresql":
        (claim,) = set(texts)  # a multi-row VALUES would be a new statement to prepare and plan per size
        assert "unnest" in claim
    else:
        assert len(set(texts)) == 3
