"""Benchmark: CPU per event of the sla-monitor's lead.assigned and lead.activity handlers.

Run: .venv/bin/python bench/sla_handlers.py [--backend sqlite|postgres] [--events 600] [--rounds 5]
It migrates a scratch database (a SQLite file, or a scratch PostgreSQL database made and dropped on
--postgres-admin) and stores one team calendar. For each policy (the built-in one: one wall-clock
obligation; a signed-like one: a wall-clock and a business-clock obligation on the team's calendar)
and batch size, it hands runs of fresh assignments to `on_lead_assigned`, then an activity per lead
(accepted, moving the lead to sal: it meets one obligation) to `on_lead_activity`, each run in its own
transaction as the consumer does, and prints the process CPU time (which includes aiosqlite's thread)
per event, the median of --rounds rounds of --events events.
"""

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from scratch import scratch_database

from leadrelay.db import SessionFactory, create_engine, create_session_factory, run_migrations
from leadrelay.events import CloudEvent, LeadActivity, LeadAssigned, new_event
from leadrelay.stages import ActivityType, LeadStage
from sla_monitor.clocks.models import TeamCalendarRecord
from sla_monitor.config import SlaMonitorSettings
from sla_monitor.context import SlaContext
from sla_monitor.main import MIGRATIONS_DIR
from sla_monitor.policy.document import SlaDocument
from sla_monitor.policy.service import CompiledPolicy, Policies
from sla_monitor.timers.handlers import on_lead_activity, on_lead_assigned

TEAM = "emea"
WEEKDAY = [{"start": "09:00", "end": "17:00"}]
TWO_OBLIGATIONS: dict[str, Any] = {
    "hours_per_business_day": 8,
    "obligations": [
        {"name": "accept", "met_by": ["accepted", "rejected"], "clock": "wall", "targets": [{"within": "10m"}],
         "warn_at": 0.5, "escalation": ["remind", "reassign"], "on_reassignment": "restart",
         "stages": ["lead", "mql", "sal"]},
        {"name": "first_touch", "met_by": ["contacted"], "clock": "business",
         "targets": [{"when": {"grades": ["A"]}, "within": "1h"}, {"within": "2h"}], "warn_at": 0.8,
         "escalation": ["notify_manager"], "on_reassignment": "keep", "stages": ["lead", "mql", "sal"]},
    ],
}  # fmt: skip
BATCHES = (1, 10, 50)


def assignment(lead_id: str, at: datetime, n: int) -> CloudEvent[LeadAssigned]:
    data = LeadAssigned(lead_id=lead_id, assignment_id=str(uuid4()), rep_id=f"rep-{n % 50}", team_id=TEAM,
                        rule_path=["default"], candidates=["rep-1", "rep-2"], routing_version="1", assigned_at=at,
                        grade="AB"[n % 2] + "1", source="webinar")  # fmt: skip
    return new_event(data, source="leadrelay/router")


def accepted(lead_id: str, at: datetime) -> CloudEvent[LeadActivity]:
    data = LeadActivity(lead_id=lead_id, rep_id="rep-1", activity=ActivityType.ACCEPTED, occurred_at=at,
                        stage=LeadStage.SAL)  # fmt: skip
    return new_event(data, source="leadrelay/intake")


Handler = Callable[..., Awaitable[None]]


async def cpu_per_event(
    sessions: SessionFactory, context: SlaContext, handler: Handler, events: Sequence[CloudEvent[Any]], batch: int
) -> float:
    """Process CPU milliseconds per event to hand `events` to `handler` in runs of `batch`, a transaction each."""
    began = time.process_time()
    for start in range(0, len(events), batch):
        async with sessions() as session, session.begin():
            await handler(events[start : start + batch], session, context=context)
    return (time.process_time() - began) * 1000 / len(events)


async def measure(url: str, *, events: int, rounds: int) -> list[tuple[str, int, float, float]]:
    engine = create_engine(url)
    try:
        await run_migrations(engine, MIGRATIONS_DIR)
        sessions = create_session_factory(engine)
        async with sessions() as session:
            hours = dict.fromkeys(("mon", "tue", "wed", "thu", "fri"), WEEKDAY)
            session.add(
                TeamCalendarRecord(
                    team_id=TEAM, version=1, timezone="UTC", changed_at=datetime.now(UTC), working_hours=hours
                )
            )
            await session.commit()
        builtin = SlaContext.of(SlaMonitorSettings(_env_file=None))  # type: ignore[call-arg]
        signed = SlaContext.of(SlaMonitorSettings(_env_file=None))  # type: ignore[call-arg]
        signed.policies = Policies(
            builtin=CompiledPolicy(version="2", document=SlaDocument.model_validate(TWO_OBLIGATIONS))
        )
        results = []
        for name, context in (("built-in (1 obligation)", builtin), ("signed (2 obligations)", signed)):
            for batch in BATCHES:
                assigned_ms, activity_ms = [], []
                for _ in range(rounds + 1):  # the first round warms up
                    at = datetime.now(UTC)
                    leads = [str(uuid4()) for _ in range(events)]
                    assignments = [assignment(lead, at, n) for n, lead in enumerate(leads)]
                    activities = [accepted(lead, at + timedelta(minutes=2)) for lead in leads]
                    assigned_ms.append(await cpu_per_event(sessions, context, on_lead_assigned, assignments, batch))
                    activity_ms.append(await cpu_per_event(sessions, context, on_lead_activity, activities, batch))
                results.append((name, batch, statistics.median(assigned_ms[1:]), statistics.median(activity_ms[1:])))
        return results
    finally:
        await engine.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--postgres-admin", default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--events", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    async with scratch_database(args.backend, args.postgres_admin, "lr_bench_sla") as url:
        results = await measure(url, events=args.events, rounds=args.rounds)
    lines = [
        f"{args.backend}: CPU ms per event, median of {args.rounds} rounds of {args.events} events",
        f"{'policy':<26}{'batch':>6}{'lead.assigned':>15}{'lead.activity':>15}",
        *(f"{name:<26}{batch:>6}{assigned:>15.3f}{activity:>15.3f}" for name, batch, assigned, activity in results),
    ]
    print("\n".join(lines))  # noqa: T201  (a benchmark prints its figures)


if __name__ == "__main__":
    asyncio.run(main())
