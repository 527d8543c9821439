"""Scratch databases for the benchmarks: a temporary SQLite file, or a PostgreSQL database dropped afterwards."""

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url


@asynccontextmanager
async def scratch_database(backend: str, admin_url: str, name: str) -> AsyncIterator[str]:
    """A fresh database's SQLAlchemy URL: SQLite in a temporary folder, or `name` on `admin_url`'s server."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite+aiosqlite:///{Path(folder) / f'{name}.db'}"
        return
    admin = make_url(admin_url)
    connection = await asyncpg.connect(admin.set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # left by a killed run
        await connection.execute(f'CREATE DATABASE "{name}"')
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.close()
