"""Benchmark: the sla-monitor's due-timer scan with 100,000 durable timers.

Run: .venv/bin/python bench/sla_timers.py [--timers 100000] [--due 2000] [--postgres URL]
It migrates a scratch database, inserts the timers (all but `--due` of them in the future), then
times the query the breach job runs every second when nothing is due, and the rate at which it
breaches the due ones (claim, update, outbox row, commit), and prints medians.
"""

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert

from leadrelay.db import create_engine, create_session_factory, run_migrations
from leadrelay.events import utcnow
from leadrelay.stages import SlaState
from sla_monitor.main import MIGRATIONS_DIR
from sla_monitor.timers import service
from sla_monitor.timers.models import SlaTimer


async def measure(url: str, timers: int, due: int) -> tuple[float, float]:
    engine = create_engine(url)
    try:
        await run_migrations(engine, MIGRATIONS_DIR)
        sessions = create_session_factory(engine)
        now = utcnow()
        rows = [
            {
                "id": f"t{i}",
                "lead_id": f"lead-{i}",
                "assignment_id": f"a{i}",
                "obligation": "first_response",
                "rep_id": f"rep-{i % 50}",
                "policy_version": "bench",
                "started_at": now,
                "due_at": now - timedelta(seconds=1) if i < due else now + timedelta(seconds=60 + i % 3600),
                "status": SlaState.RUNNING,
            }
            for i in range(timers)
        ]
        async with sessions() as session:
            for start in range(0, timers, 5000):
                await session.exec(insert(SlaTimer), params=rows[start : start + 5000])  # type: ignore[call-overload]
            await session.commit()

        idle = []
        for _ in range(50):
            async with sessions() as session:
                started = time.perf_counter()
                assert await service.claim_due(session=session, now=now - timedelta(seconds=5)) == []
                idle.append(time.perf_counter() - started)

        started = time.perf_counter()
        breached = 0
        while breached < due:
            async with sessions() as session:
                breached += await service.breach_due(session=session, now=utcnow())
                await session.commit()
        rate = due / (time.perf_counter() - started)
        return statistics.median(idle), rate
    finally:
        await engine.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timers", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=2_000)
    parser.add_argument("--postgres", help="an empty PostgreSQL database URL (postgresql+asyncpg://...)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        backends = {"sqlite": f"sqlite+aiosqlite:///{Path(scratch) / 'sla.db'}"}
        if args.postgres:
            backends["postgres"] = args.postgres
        for backend, url in backends.items():
            idle, rate = await measure(url, args.timers, args.due)
            line = f"{backend:8} {args.timers} timers: idle scan median {idle * 1000:.2f} ms, breaches {rate:,.0f}/s"
            print(line, flush=True)  # noqa: T201  (a benchmark prints its figures)


if __name__ == "__main__":
    asyncio.run(main())
