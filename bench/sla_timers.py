"""Benchmark: the sla-monitor's timer job with 100,000 open timers, a few thousand coming due during the run.

Run: .venv/bin/python bench/sla_timers.py [--timers 100000] [--due 3000] [--seconds 10] [--backend sqlite|postgres]
It migrates a scratch database (a SQLite file, or a scratch PostgreSQL database made and dropped on
--postgres-admin), bulk-inserts the open timers: `--due` of them come due over `--seconds` from a
moment after the insert (every other one warned half a second before), the rest hours later. Then it
runs the real timer job (`run_timers`: it sleeps until the next instant) until every due timer is
breached, and prints the lateness of breaches and warnings (from the instant to the commit that fired
it, as leadrelay_sla_fire_lateness_seconds measures it) p50/p99/max, and the process's peak resident
memory (targets: breach p99 under 1 s, under 300 MB).
"""

import argparse
import asyncio
import contextlib
import platform
import resource
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import asyncpg
from sqlalchemy import insert
from sqlalchemy.engine import make_url

from leadrelay.db import create_engine, create_session_factory, run_migrations
from leadrelay.events import utcnow
from leadrelay.stages import SlaState
from sla_monitor.config import SlaMonitorSettings
from sla_monitor.context import SlaContext
from sla_monitor.main import MIGRATIONS_DIR
from sla_monitor.timers.jobs import run_timers
from sla_monitor.timers.models import SlaTimer

CHUNK = 5_000
LEAD_SECONDS = 3.0
"""The first due instant comes this long after the later timers are stored: the job starts with nothing due."""


class Lateness:
    """Stands in for the lateness histogram and keeps every observation, by event."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = defaultdict(list)

    def labels(self, *, event: str) -> SimpleNamespace:
        return SimpleNamespace(observe=self.values[event].append)


def rows(numbers: range, *, due: int, first: datetime, seconds: float) -> Iterator[list[dict[str, Any]]]:
    """Timers in chunks: numbers below `due` come due from `first` over `seconds`, the others 1 to 24 hours later."""
    chunk: list[dict[str, Any]] = []
    for n in numbers:
        if n < due:
            due_at = first + timedelta(seconds=seconds * n / due)
            warn_at = due_at - timedelta(seconds=0.5) if n % 2 else None
        else:
            due_at, warn_at = first + timedelta(hours=1 + n % 23, seconds=n % 3600), None
        chunk.append({"id": str(uuid4()), "lead_id": str(uuid4()), "assignment_id": f"a{n}", "sequence": 1,
                      "obligation": "first_touch", "rep_id": f"rep-{n % 500}", "team_id": f"team-{n % 20}",
                      "grade": "AB"[n % 2], "policy_version": "bench", "clock": "wall", "within_seconds": 3600.0,
                      "met_by": ["contacted"], "stages": ["lead", "mql", "sal"], "escalation": ["reassign"],
                      "started_at": due_at - timedelta(hours=1), "warn_at": warn_at, "due_at": due_at,
                      "next_at": warn_at or due_at, "status": SlaState.RUNNING})  # fmt: skip
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def quantile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def measure(url: str, *, timers: int, due: int, seconds: float) -> dict[str, float]:
    engine = create_engine(url)
    try:
        await run_migrations(engine, MIGRATIONS_DIR)
        sessions = create_session_factory(engine)
        began = time.perf_counter()
        # The later timers first, however long that takes; then the due ones, their instants from the clock then.
        async with sessions() as session:
            for chunk in rows(range(due, timers), due=due, first=utcnow(), seconds=seconds):
                await session.exec(insert(SlaTimer), params=chunk)  # type: ignore[call-overload]
            await session.commit()
        first = utcnow() + timedelta(seconds=LEAD_SECONDS)
        async with sessions() as session:
            for chunk in rows(range(due), due=due, first=first, seconds=seconds):
                await session.exec(insert(SlaTimer), params=chunk)  # type: ignore[call-overload]
            await session.commit()
        inserted = time.perf_counter() - began

        context = SlaContext.of(SlaMonitorSettings(_env_file=None))  # type: ignore[call-arg]
        lateness = Lateness()
        context.metrics.fire_lateness_seconds = lateness  # type: ignore[assignment]
        job = asyncio.create_task(run_timers(sessions=sessions, context=context))
        deadline = time.monotonic() + (first - utcnow()).total_seconds() + seconds + 60
        try:
            while len(lateness.values["breached"]) < due:
                if time.monotonic() > deadline or job.done():
                    raise SystemExit(f"only {len(lateness.values['breached'])} of {due} breaches in time")
                await asyncio.sleep(0.1)
        finally:
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job
        breached, warned = lateness.values["breached"], lateness.values["warning"]
        return {
            "insert_s": inserted,
            "breaches": len(breached),
            "warnings": len(warned),
            "breach_p50_ms": statistics.median(breached) * 1000,
            "breach_p99_ms": quantile(breached, 0.99) * 1000,
            "breach_max_ms": max(breached) * 1000,
            "warning_p99_ms": quantile(warned, 0.99) * 1000 if warned else 0.0,
            "earliest_ms": min(breached + warned) * 1000,
        }
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def scratch_postgres(admin_url: str) -> Any:
    """A fresh PostgreSQL database for the run, dropped afterwards."""
    admin = make_url(admin_url)
    name = f"bench_sla_{uuid4().hex[:8]}"
    dsn = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timers", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=3_000, help="timers coming due during the run")
    parser.add_argument("--seconds", type=float, default=10.0, help="the run's due instants span this long")
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--postgres-admin", default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres",
                        help="a PostgreSQL URL allowed to create and drop a scratch database")  # fmt: skip
    args = parser.parse_args()
    options = {"timers": args.timers, "due": args.due, "seconds": args.seconds}
    with tempfile.TemporaryDirectory() as scratch:
        if args.backend == "sqlite":
            figures = await measure(f"sqlite+aiosqlite:///{Path(scratch) / 'sla.db'}", **options)
        else:
            async with scratch_postgres(args.postgres_admin) as url:
                figures = await measure(url, **options)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux
    print(  # noqa: T201  (a benchmark prints its figures)
        f"{args.backend:8} {args.timers:,} open timers, {figures['breaches']:,.0f} breached and "
        f"{figures['warnings']:,.0f} warned over {args.seconds:g} s ({platform.machine()}, {utcnow():%Y-%m-%d}): "
        f"breach lateness p50 {figures['breach_p50_ms']:.1f} ms, p99 {figures['breach_p99_ms']:.1f} ms, "
        f"max {figures['breach_max_ms']:.1f} ms; warning p99 {figures['warning_p99_ms']:.1f} ms; "
        f"earliest {figures['earliest_ms']:.1f} ms after its instant; insert {figures['insert_s']:.1f} s; "
        f"peak resident {peak_mb:.0f} MB",
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main())
