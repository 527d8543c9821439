"""Benchmark: the ICP impact preview over 100,000 leads (target: an answer in under 10 seconds).

Run: .venv/bin/python bench/icp_preview.py [--leads 100000] [--days 30] [--postgres URL]
It migrates a scratch scoring database (SQLite in a temporary folder; PostgreSQL too with
--postgres, a database created on that server and dropped afterwards), inserts the leads' stored
scores (facts like demo traffic, account included for half of them) and one to three engagements
for a third of them, drafts the demo ICP (deploy/demo/icp.yaml) and times its preview against the
default ICP, three times, printing each wall-clock time, the median, and the median CPU time of
this process (on a shared machine, wall-clock time also counts the neighbours' turns).
"""

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import yaml
from sqlalchemy import insert
from sqlalchemy.engine import make_url

from leadrelay.agreements import service as agreements
from leadrelay.apikeys import ApiKey, Scope, Team
from leadrelay.db import create_engine, create_session_factory, run_migrations
from leadrelay.events import utcnow
from leadrelay.stages import LeadStage
from scoring.icp.document import ICP, IcpDocument
from scoring.icp.preview import preview
from scoring.main import MIGRATIONS_DIR
from scoring.scores.models import LeadEngagement, LeadScore

DEMO_ICP = Path(__file__).resolve().parent.parent / "deploy" / "demo" / "icp.yaml"
COMPANIES = [("software", 250), ("manufacturing", 1200), ("software", 40), ("financial services", 8000),
             ("logistics", 600)]  # fmt: skip
TITLES = ["CTO", "Head of Engineering", "VP Sales", "Marketing Manager", "Developer", "Student", "CEO", None]
SOURCES = ["webinar", "pricing-page", "ebook", "trade-show", "referral"]
COUNTRIES = ["GB", "DE", "FR", "US", "NL", None]
ENGAGEMENTS = ["email_clicked", "pricing_page_viewed", "content_downloaded", "webinar_attended", "demo_requested"]
AUTHOR = ApiKey(id="key_bench", name="bench", team=Team.OPS, scopes=[Scope.ICP_WRITE], key_hash="-")


def rows(count: int, rng: random.Random) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Stored scores and engagements of `count` made-up leads received over the last 29 days."""
    now = utcnow()
    scores, engagements = [], []
    for number in range(count):
        lead_id = f"lead-{number:07d}"
        industry, employees = rng.choice(COMPANIES)
        source = rng.choice(SOURCES)
        facts: dict[str, Any] = {
            "job_title": rng.choice(TITLES),
            "country": rng.choice(COUNTRIES),
            "source": source,
            "company": "Demo Co",
            "email_domain": f"company{number % 500}.example",
            "email_free_mail": rng.random() < 0.1,
            "attributes": {},
        }
        if rng.random() < 0.5:
            facts |= {"industry": industry, "employees": employees}
            facts["account"] = {"name": "Demo Co", "industry": industry, "employees": employees}
        received = now - timedelta(days=rng.uniform(0, 29))
        scores.append(
            {"lead_id": lead_id, "score": 0, "stage": LeadStage.LEAD, "icp_version": "default", "source": source,
             "received_at": received, "facts": facts, "explanation": [], "lead": {}, "enriched_fields": []}
        )  # fmt: skip
        if rng.random() < 0.33:
            for event in range(rng.randint(1, 3)):
                engagements.append(
                    {"event_id": f"{lead_id}-{event}", "lead_id": lead_id, "activity": rng.choice(ENGAGEMENTS),
                     "occurred_at": received + timedelta(days=rng.uniform(0, 3))}
                )  # fmt: skip
    return scores, engagements


async def measure(url: str, leads: int, days: int) -> tuple[int, list[float], list[float]]:
    """Wall-clock and CPU seconds of three previews, and the leads they considered."""
    engine = create_engine(url)
    try:
        await run_migrations(engine, MIGRATIONS_DIR)
        sessions = create_session_factory(engine)
        scores, engagements = rows(leads, random.Random(7))
        async with sessions() as session:
            for start in range(0, len(scores), 5000):
                await session.exec(insert(LeadScore), params=scores[start : start + 5000])  # type: ignore[call-overload]
            for start in range(0, len(engagements), 5000):
                await session.exec(insert(LeadEngagement), params=engagements[start : start + 5000])  # type: ignore[call-overload]
            await session.commit()
        document = IcpDocument.model_validate(yaml.safe_load(DEMO_ICP.read_text())["document"])
        async with sessions() as session:
            record = await agreements.draft(session, kind=ICP, document=document, note="bench", actor=AUTHOR)
        seconds, cpu, considered = [], [], 0
        for _ in range(3):
            async with sessions() as session:
                started, cpu_started = time.perf_counter(), time.process_time()
                answer = await preview(session=session, version=record.version.version, days=days)
                seconds.append(time.perf_counter() - started)
                cpu.append(time.process_time() - cpu_started)
                considered = answer.leads
        return considered, seconds, cpu
    finally:
        await engine.dispose()


async def scratch_postgres(admin_url: str) -> tuple[str, str]:
    database = f"lr_bench_preview_{uuid4().hex[:8]}"
    dsn = make_url(admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f'CREATE DATABASE "{database}"')
    finally:
        await connection.close()
    return make_url(admin_url).set(database=database).render_as_string(hide_password=False), dsn


async def main() -> None:
    """Run on SQLite, and on PostgreSQL when asked; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--postgres", metavar="URL", help="e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    targets: list[tuple[str, str, str | None]] = []
    with tempfile.TemporaryDirectory() as folder:
        targets.append(("sqlite", f"sqlite+aiosqlite:///{folder}/scoring.db", None))
        if args.postgres:
            url, admin_dsn = await scratch_postgres(args.postgres)
            targets.append(("postgres", url, admin_dsn))
        for name, url, admin_dsn in targets:
            try:
                considered, seconds, cpu = await measure(url, args.leads, args.days)
            finally:
                if admin_dsn is not None:
                    connection = await asyncpg.connect(admin_dsn)
                    database = make_url(url).database
                    await connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
                    await connection.close()
            runs = ", ".join(f"{value:.2f}" for value in seconds)
            cpu_runs = ", ".join(f"{value:.2f}" for value in cpu)
            line = (
                f"{name}: preview of {considered} leads (of {args.leads} stored, last {args.days} days), "
                f"demo ICP against default: median {statistics.median(seconds):.2f} s (runs: {runs}); "
                f"CPU of this process (database driver included, not the PostgreSQL server) median "
                f"{statistics.median(cpu):.2f} s (runs: {cpu_runs})"
            )
            print(line, flush=True)  # noqa: T201  (a benchmark prints its figures)


if __name__ == "__main__":
    asyncio.run(main())
