"""CPU per event of intake's read-model handlers (lead.scored, lead.assigned, sla.started, sla.met).

Each round stages fresh leads, then folds each event type into them in runs of the batch size,
one transaction per run as the consumer does (its idempotency claim left out). Process CPU time
(the aiosqlite thread included) per event, median of the rounds.

    .venv/bin/python bench/intake_read_model.py [--events 500] [--rounds 5] [--batches 1,10,50]
        [--postgres postgresql+asyncpg://postgres@127.0.0.1:5432/lr_bench_intake]
"""

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from intake.leads import handlers
from intake.leads.models import Lead
from leadrelay import db
from leadrelay.events import (
    AccountMatch,
    CloudEvent,
    LeadAssigned,
    LeadReceived,
    LeadScored,
    MatchMethod,
    ScoreCriterion,
    SlaMet,
    SlaStarted,
    new_event,
)
from leadrelay.stages import ActivityType, LeadStage
from leadrelay.testing import Storage, migrated, migrations_of

AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
Handler = Callable[[Sequence[CloudEvent[Any]], AsyncSession], Awaitable[None]]


def _scored(lead_id: str) -> CloudEvent[LeadScored]:
    explanation = [
        ScoreCriterion(criterion=f"criterion_{n}", points=5 * n, reason=f"matched rule {n}") for n in range(12)
    ]
    return new_event(
        LeadScored(
            lead_id=lead_id,
            score=86,
            stage=LeadStage.MQL,
            icp_version="3",
            explanation=explanation,
            scored_at=AT,
            lead=LeadReceived(lead_id=lead_id, email=f"{lead_id}@example.com", source="api", received_at=AT),
            fit=60,
            engagement=26,
            grade="A2",
            mql=True,
            mql_reason="fit 60 and engagement 26",
            became_mql=True,
            account=AccountMatch(account_id="acc-1", method=MatchMethod.DOMAIN, confidence=1.0),
            enriched_fields=["industry", "employees"],
        ),
        source="leadrelay/scoring",
    )


def _assigned(lead_id: str) -> CloudEvent[LeadAssigned]:
    candidates = [f"rep-{n}" for n in range(8)]
    return new_event(
        LeadAssigned(
            lead_id=lead_id,
            assignment_id=f"asg-{lead_id}",
            rep_id="rep-3",
            team_id="team-emea",
            rule_path=["emea", "enterprise"],
            candidates=candidates,
            routing_version="7",
            assigned_at=AT,
            grade="A2",
            source="api",
            mql=True,
            explanation={
                "rule": "enterprise",
                "rules": [{"rule": "emea", "matched": True}, {"rule": "enterprise", "matched": True}],
                "actions": [{"action": "round_robin", "candidates": candidates}],
            },
        ),
        source="leadrelay/router",
    )


def _sla_fields(lead_id: str) -> dict[str, Any]:
    return {
        "lead_id": lead_id,
        "obligation": "first_touch",
        "assignment_id": f"asg-{lead_id}",
        "rep_id": "rep-3",
        "team_id": "team-emea",
        "grade": "A2",
        "source": "api",
        "policy_version": "2",
        "due_at": AT + timedelta(minutes=5),
    }


def _started(lead_id: str) -> CloudEvent[SlaStarted]:
    data = SlaStarted(**_sla_fields(lead_id), started_at=AT, warn_at=AT + timedelta(minutes=4), within_seconds=300)
    return new_event(data, source="leadrelay/sla-monitor")


def _met(lead_id: str) -> CloudEvent[SlaMet]:
    data = SlaMet(
        **_sla_fields(lead_id), met_at=AT + timedelta(minutes=2), activity=ActivityType.CONTACTED, elapsed_seconds=120
    )
    return new_event(data, source="leadrelay/sla-monitor")


STEPS: list[tuple[str, Callable[[str], CloudEvent[Any]], Handler]] = [
    ("lead.scored", _scored, handlers.on_lead_scored),
    ("lead.assigned", _assigned, handlers.on_lead_assigned),
    ("sla.started", _started, handlers.on_sla_started),
    ("sla.met", _met, handlers.on_sla_met),
]


async def _stage_leads(storage: Storage, count: int) -> list[str]:
    rows = [db.new_row(Lead, email=f"{uuid4()}@example.com") for _ in range(count)]
    async with storage.sessions() as session, session.begin():
        await (await session.connection()).execute(insert(Lead), rows)
    return [row["id"] for row in rows]


async def _round(storage: Storage, *, events: int, batch: int) -> dict[str, float]:
    lead_ids = await _stage_leads(storage, events)
    micros: dict[str, float] = {}
    for name, make, handle in STEPS:
        runs = [[make(lead_id) for lead_id in lead_ids[start : start + batch]] for start in range(0, events, batch)]
        began = time.process_time()
        for run in runs:
            async with storage.sessions() as session, session.begin():
                await handle(run, session)
        micros[name] = (time.process_time() - began) / events * 1e6
    return micros


async def _backend(url: str, *, events: int, rounds: int, batches: Sequence[int]) -> None:
    async with migrated(url, migrations_of("intake")) as storage:
        for batch in batches:
            await _round(storage, events=min(events, 100), batch=batch)  # warm-up: statement caches, imports
            results = [await _round(storage, events=events, batch=batch) for _ in range(rounds)]
            figures = "  ".join(
                f"{name} {statistics.median(result[name] for result in results):6.0f}" for name, _, _ in STEPS
            )
            print(f"{url.split(':')[0]:<20} batch {batch:>3}  µs CPU/event: {figures}", flush=True)  # noqa: T201


async def _drop_and_create(url: str, *, create: bool) -> None:
    """A scratch PostgreSQL database, made afresh (and dropped afterwards)."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    target = make_url(url)
    admin = db.create_engine(target.set(database="postgres").render_as_string(hide_password=False))
    async with admin.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{target.database}"'))
        if create:
            await connection.execute(text(f'CREATE DATABASE "{target.database}"'))
    await admin.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500, help="events per handler per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", default="1,10,50", help="events per handler call")
    parser.add_argument("--postgres", help="a scratch database URL (dropped and created afresh, dropped after)")
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    batches = [int(size) for size in args.batches.split(",")]
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite+aiosqlite:///{folder}/intake.db"
            await _backend(url, events=args.events, rounds=args.rounds, batches=batches)
    if args.postgres:
        await _drop_and_create(args.postgres, create=True)
        try:
            await _backend(args.postgres, events=args.events, rounds=args.rounds, batches=batches)
        finally:
            await _drop_and_create(args.postgres, create=False)


if __name__ == "__main__":
    asyncio.run(main())
