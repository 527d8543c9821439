"""Benchmark: CPU of the smallest transaction through a service's PostgreSQL engine, beside pool_pre_ping.

Run: .venv/bin/python bench/db_transaction.py [--postgres-url URL] [--transactions 2000] [--rounds 5]

Each transaction is what a consumer's or relay's round costs at the least: check a connection out
of the pool, `SELECT 1`, commit, check it back in. Measured through (a) `leadrelay.db.create_engine`
(a pooled connection is pinged only when it sat idle for a second) and (b) the same engine options
with SQLAlchemy's `pool_pre_ping=True` (BEGIN, `;`, ROLLBACK on every checkout), alternating. Each
figure is this process's CPU per transaction (`time.process_time`), the median of `--rounds`.
"""

import argparse
import asyncio
import statistics
import time

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from leadrelay.db import create_engine

DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


async def cpu_per_transaction(engine: AsyncEngine, transactions: int) -> float:
    """Microseconds of this process's CPU per checkout, SELECT 1 and commit."""
    started = time.process_time()
    for _ in range(transactions):
        async with engine.begin() as connection:
            await connection.execute(text("SELECT 1"))
    return 1e6 * (time.process_time() - started) / transactions


async def run(args: argparse.Namespace) -> list[str]:
    """Alternate the two engines; one line per engine with its median and every round."""
    engines = {
        "leadrelay engine (idle ping)": create_engine(args.postgres_url),
        "pool_pre_ping on every checkout": create_async_engine(
            args.postgres_url, pool_size=10, max_overflow=10, pool_pre_ping=True
        ),
    }
    figures: dict[str, list[float]] = {name: [] for name in engines}
    try:
        for engine in engines.values():
            await cpu_per_transaction(engine, 200)  # connections open, statements cached
        for _ in range(args.rounds):
            for name, engine in engines.items():
                figures[name].append(await cpu_per_transaction(engine, args.transactions))
    finally:
        for engine in engines.values():
            await engine.dispose()
    return [
        f"{name}: {statistics.median(rounds):.0f} µs of CPU per transaction"
        f" (rounds: {', '.join(f'{value:.0f}' for value in rounds)})"
        for name, rounds in figures.items()
    ]


def main() -> None:
    """Parse the arguments, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres-url", default=DEFAULT_URL)
    parser.add_argument("--transactions", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    for line in asyncio.run(run(parser.parse_args())):
        print(line, flush=True)  # noqa: T201  (a benchmark prints its figures)


if __name__ == "__main__":
    main()
