"""Benchmark: CPU per event of scoring's lead.received handler, in batches of 1, 10 and 50.

Run: .venv/bin/python bench/scoring_handlers.py [--batches 1,10,50] [--leads 500] [--rounds 5]
         [--accounts 1000] [--icp demo|default] [--postgres URL]
It migrates a scratch SQLite database (and, with --postgres, a scratch PostgreSQL database created
there and dropped afterwards), seeds an account book as bench/account_matching.py does and makes the
demo ICP (deploy/demo/icp.yaml) the active version. Each round then hands `--leads` new leads to
`on_lead_received` for every batch size, one transaction per call as the consumer does (its fetch,
parsing and processed-event claim are not counted); the leads mix domain, subdomain, exact-name,
near-miss and unmatched companies, so account matching and enrichment take every path. It prints
the median of the rounds' process CPU time per lead (which includes the aiosqlite thread): the
figure to trust on a shared machine, not wall time.
"""

import argparse
import asyncio
import random
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import yaml
from account_matching import _book, _insert, _typo
from prometheus_client import CollectorRegistry
from scratch import scratch_database
from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from leadrelay.agreements.models import AgreementHead, AgreementVersion, VersionStatus
from leadrelay.db import SessionFactory, create_engine, create_session_factory, run_migrations
from leadrelay.events import CloudEvent, LeadReceived, new_event
from leadrelay.outbox import OutboxMessage
from scoring.config import ScoringSettings
from scoring.icp.document import ICP
from scoring.main import MIGRATIONS_DIR
from scoring.scores.handlers import ScoringContext, on_lead_received
from scoring.scores.metrics import ScoringMetrics

DEMO_ICP = Path(__file__).resolve().parent.parent / "deploy" / "demo" / "icp.yaml"
TITLES = ["CTO", "VP Sales", "Head of Marketing", "Engineering Manager", "Developer", "Analyst", "Founder"]
COUNTRIES = ["GB", "DE", "US", "IE", "FR", "AU", None]
SOURCES = ["webinar", "referral", "trade-show", "pricing-page", "ebook", "api"]
INDUSTRIES = ["software", "financial services", "retail", None]
MATCHES = ("domain", "domain", "subdomain", "name", "fuzzy_name", "no_match", "free_mail")


def _lead(number: int, accounts: list[dict[str, Any]], rng: random.Random) -> CloudEvent[LeadReceived]:
    account = rng.choice(accounts)
    word, second = account["words"]
    domain = account["domains"][0]
    kind = rng.choice(MATCHES)
    fields: dict[str, Any] = {"email": f"p{number}@gmail.com", "email_free_mail": True}
    if kind == "domain":
        fields = {"email": f"p{number}@{domain}", "company": account["name"]}
    elif kind == "subdomain":
        fields = {"email": f"p{number}@eu.{domain}"}
    elif kind == "name":
        fields["company"] = f"{word.upper()} {second.upper()}, Limited"
    elif kind == "fuzzy_name":
        fields["company"] = _typo(account["name"], rng)
    elif kind == "no_match":
        fields = {"email": f"p{number}@nowhere{number}.example", "company": f"Qzxv{number} Holdings"}
    lead = LeadReceived(
        lead_id=str(uuid4()),
        first_name="Ada",
        last_name=f"Person{number}",
        job_title=rng.choice(TITLES),
        country=rng.choice(COUNTRIES),
        source=rng.choice(SOURCES),
        campaign="q4-launch",
        industry=rng.choice(INDUSTRIES),
        employees=rng.choice([None, 40, 250, 3000]),
        received_at=datetime.now(UTC),
        attributes={"technologies": rng.sample(["salesforce", "hubspot", "snowflake", "excel"], 2)},
        **fields,
    )
    return new_event(lead, source="bench")


async def _activate_demo_icp(sessions: SessionFactory) -> None:
    """Make the demo ICP the active version, as `make run` does through sign-off, without the sign-off."""
    document = yaml.safe_load(DEMO_ICP.read_text())["document"]
    async with sessions() as session, session.begin():
        session.add(
            AgreementVersion(
                kind=ICP.name,
                version=1,
                status=VersionStatus.ACTIVE,
                document=document,
                required={},
                author_key_id="bench",
                author_name="bench",
                author_team="marketing",
            )
        )
        session.add(AgreementHead(kind=ICP.name, latest_version=1, active_version=1))


async def measure(url: str, args: argparse.Namespace) -> dict[int, float]:
    """Median CPU seconds per lead for each batch size."""
    engine: AsyncEngine = create_engine(url)
    batches = [int(size) for size in args.batches.split(",")]
    timings: dict[int, list[float]] = {size: [] for size in batches}
    try:
        await run_migrations(engine, MIGRATIONS_DIR)
        accounts = _book(0, args.accounts, args.seed)
        await _insert(engine, accounts)
        sessions = create_session_factory(engine)
        if args.icp == "demo":
            await _activate_demo_icp(sessions)
        settings = ScoringSettings()
        context = ScoringContext(settings, ScoringMetrics(CollectorRegistry(), sources=settings.scoring_sources))
        rng = random.Random(args.seed)
        handled = 0
        for round_number in range(args.rounds + 1):
            for size in batches if round_number % 2 else batches[::-1]:
                events = [_lead(handled + n, accounts, rng) for n in range(args.leads)]
                handled += len(events)
                started = time.process_time()
                for start in range(0, len(events), size):
                    async with sessions() as session, session.begin():
                        await on_lead_received(events[start : start + size], session, context=context)
                elapsed = time.process_time() - started
                if round_number:  # round 0 warms the caches up
                    timings[size].append(elapsed / len(events))
        async with sessions() as session:
            published = (await session.exec(select(func.count()).select_from(OutboxMessage))).one()
        if published != handled:
            raise RuntimeError(f"{published} lead.scored staged for {handled} leads; the benchmark is broken")
    finally:
        await engine.dispose()
    return {size: statistics.median(values) for size, values in timings.items()}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", default="1,10,50", help="events per handler call")
    parser.add_argument("--leads", type=int, default=500, help="leads per batch size and round")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (after one warm-up round)")
    parser.add_argument("--accounts", type=int, default=1000, help="accounts in the book")
    parser.add_argument("--icp", choices=("demo", "default"), default="demo", help="the active ICP")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument(
        "--postgres", help="a PostgreSQL URL (postgresql+asyncpg://...) whose user may create a scratch database"
    )
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.postgres else ["sqlite"]
    for backend in backends:
        async with scratch_database(backend, args.postgres or "", "lr_bench_scoring") as url:
            results = await measure(url, args)
        figures = "  ".join(f"batch {size}: {cost * 1e3:.3f}" for size, cost in results.items())
        print(f"{backend}: lead.received, median CPU ms per lead  {figures}", flush=True)  # noqa: T201


if __name__ == "__main__":
    asyncio.run(main())
