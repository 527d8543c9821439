"""Benchmark: CPU of one small transaction through each layer between a service and PostgreSQL.

Run: .venv/bin/python bench/db_layers.py [--postgres-url URL] [--transactions 1000] [--rounds 5] [--statements 5]

Each transaction is BEGIN, `--statements` one-row SELECTs with a bound parameter, COMMIT: the shape
of a consumer's batch or a group commit. It goes through (a) asyncpg alone, (b) SQLAlchemy's
AsyncSession as the services use it (`leadrelay.db.create_engine`, `session.execute`), (c) the
same session's Connection (`(await session.connection()).execute`), and (d) the same session with
the statements, and the transaction around them, sent on its asyncpg connection. Alternated round
by round on uvloop, as the services run; each figure is this process's CPU per transaction
(`time.process_time`), the median of `--rounds`. The difference between (a) and (b) is what the ORM
layer costs every transaction.
"""

import argparse
import statistics
import time
import warnings
from collections.abc import Awaitable, Callable

import asyncpg
import uvloop
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.db import create_engine

DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
STATEMENT = "SELECT CAST(:x AS INTEGER)"
RAW_STATEMENT = "SELECT $1::integer"

Transaction = Callable[[], Awaitable[None]]


async def cpu_per_transaction(transaction: Transaction, count: int) -> float:
    """Microseconds of this process's CPU per transaction."""
    started = time.process_time()
    for _ in range(count):
        await transaction()
    return 1e6 * (time.process_time() - started) / count


async def run(args: argparse.Namespace) -> list[str]:
    """Alternate the four layers; one line per layer with its median, every round and its ratio to asyncpg."""
    dsn = make_url(args.postgres_url).set(drivername="postgresql").render_as_string(hide_password=False)
    raw = await asyncpg.connect(dsn)
    engine = create_engine(args.postgres_url)
    statement = text(STATEMENT)
    statements = range(args.statements)

    async def asyncpg_alone() -> None:
        async with raw.transaction():
            for value in statements:
                await raw.fetch(RAW_STATEMENT, value)

    async def session_execute() -> None:
        async with AsyncSession(engine) as session:
            for value in statements:
                (await session.execute(statement, {"x": value})).all()
            await session.commit()

    async def session_connection() -> None:
        async with AsyncSession(engine) as session:
            connection = await session.connection()
            for value in statements:
                (await connection.execute(statement, {"x": value})).all()
            await session.commit()

    async def session_driver() -> None:
        async with AsyncSession(engine) as session:
            connection = await (await session.connection()).get_raw_connection()
            driver = connection.driver_connection
            assert driver is not None
            # SQLAlchemy's adapter begins a transaction only before a statement of its own: without
            # one here the statements would each commit on their own, and BEGIN and COMMIT go uncounted.
            async with driver.transaction():
                for value in statements:
                    await driver.fetch(RAW_STATEMENT, value)
            await session.commit()

    layers: dict[str, Transaction] = {
        "(a) asyncpg alone": asyncpg_alone,
        "(b) AsyncSession.execute": session_execute,
        "(c) the session's Connection": session_connection,
        "(d) the session, statements on asyncpg": session_driver,
    }
    figures: dict[str, list[float]] = {name: [] for name in layers}
    try:
        for transaction in layers.values():
            await cpu_per_transaction(transaction, 100)  # connections open, statements prepared
        for _ in range(args.rounds):
            for name, transaction in layers.items():
                figures[name].append(await cpu_per_transaction(transaction, args.transactions))
    finally:
        await raw.close()
        await engine.dispose()
    alone = statistics.median(figures["(a) asyncpg alone"])
    return [
        f"{name}: {statistics.median(rounds):.0f} µs of CPU per transaction of {args.statements} statements,"
        f" {statistics.median(rounds) / alone:.1f}x asyncpg (rounds: {', '.join(f'{value:.0f}' for value in rounds)})"
        for name, rounds in figures.items()
    ]


def main() -> None:
    """Parse the arguments, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres-url", default=DEFAULT_URL)
    parser.add_argument("--transactions", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--statements", type=int, default=5)
    warnings.filterwarnings("ignore", message=r"(?s).*session\.exec\(\)")  # (b) uses execute on purpose: text()
    for line in uvloop.run(run(parser.parse_args())):
        print(line, flush=True)  # noqa: T201  (a benchmark prints its figures)


if __name__ == "__main__":
    main()
