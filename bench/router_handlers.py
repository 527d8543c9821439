"""Benchmark: router's CPU per event on the per-lead path (lead.scored, sla.started, one delivery).

Run: .venv/bin/python bench/router_handlers.py [--url sqlite+aiosqlite:///...] [--leads 600] [--rounds 5]
On a fresh migrated database with one all-day team, it times `on_lead_scored` in batches of 1, 10
and 50 leads under the built-in ruleset (every lead to the default rep) and under a ruleset
sending every lead to a pool of 10 reps by weighted round robin, then `on_sla_started` for those
assignments (their deliveries become due), then the delivery job's rounds (`claim_round` +
`deliver_all`) against a bare HTTP endpoint in a child process (its CPU is not counted). Each
figure is this process's CPU time (`time.process_time`, which includes aiosqlite's thread) per
event, the median of `--rounds` after one round that warms caches and connections up.
"""

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

from prometheus_client import CollectorRegistry
from sqlmodel import col, select

from leadrelay.events import LeadReceived, LeadScored, SlaStarted, new_event, utcnow
from leadrelay.stages import LeadStage
from leadrelay.testing import Storage, migrated, migrations_of
from router.assignments.handlers import on_lead_scored
from router.assignments.models import Assignment
from router.config import RouterSettings
from router.context import RouterContext
from router.notifications.handlers import on_sla_started
from router.notifications.jobs import Sender, delivery_transport
from router.notifications.metrics import NotificationMetrics
from router.reps import service as reps
from router.reps.crypto import channel_box
from router.reps.schemas import RepPut
from router.rules.document import RoutingDocument
from router.rules.engine import compile_rules
from router.teams import service as teams
from router.teams.schemas import TeamPut

SECRET_KEY = "bench-secret-key-0123456789"
WEBHOOK_SECRET = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LWZvci1hZGE="
ALL_DAY = [{"start": "00:00", "end": "24:00"}]
POOL = [f"rep-pool-{number}" for number in range(10)]
# A bare HTTP/1.1 endpoint answering 204 to every request on a kept-alive connection.
ENDPOINT = """
import asyncio, sys
async def handle(reader, writer):
    while True:
        try:
            head = await reader.readuntil(b"\\r\\n\\r\\n")
        except asyncio.IncompleteReadError:
            return
        length = int(next((line.split(b":")[1] for line in head.split(b"\\r\\n")
                           if line.lower().startswith(b"content-length")), b"0"))
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 204 No Content\\r\\ncontent-length: 0\\r\\n\\r\\n")
        await writer.drain()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


def scored_lead() -> LeadScored:
    """A scored MQL with a matched-nothing account, as scoring publishes it."""
    lead_id = str(uuid4())
    now = utcnow()
    lead = LeadReceived(lead_id=lead_id, email=f"{lead_id[:8]}@acme.example", first_name="Grace", last_name="Hopper",
                        company="Acme", job_title="CTO", country="GB", source="api", received_at=now)  # fmt: skip
    return LeadScored(lead_id=lead_id, score=87, stage=LeadStage.MQL, icp_version="1", explanation=[], scored_at=now,
                      lead=lead, grade="A1", mql=True, mql_reason="score 87 >= 70")  # fmt: skip


async def setup(storage: Storage, url: str) -> None:
    """The default team open all day, the default rep and a pool of 10, each with one webhook channel."""
    channel = {"kind": "webhook", "url": url, "secret": WEBHOOK_SECRET}
    async with storage.sessions() as session:
        team_in = TeamPut.model_validate(
            {
                "name": "Default",
                "timezone": "UTC",
                "working_hours": dict.fromkeys(("mon", "tue", "wed", "thu", "fri", "sat", "sun"), ALL_DAY),
            }
        )
        await teams.put(session=session, team_id="default", team_in=team_in, actor=None)
        for rep_id in ["rep-default", *POOL]:
            rep_in = RepPut.model_validate({"name": rep_id, "teams": ["default"], "channels": [channel]})
            await reps.put(session=session, rep_id=rep_id, rep_in=rep_in, box=channel_box(SECRET_KEY), actor=None)


def pool_rules() -> Any:
    """Every lead to the pool of 10 by weighted round robin, the default team's queue otherwise."""
    document = {
        "rules": [
            {
                "name": "pool",
                "when": "always",
                "action": {"type": "pool", "reps": POOL, "strategy": "weighted_round_robin"},
                "otherwise": {"type": "queue", "team": "default"},
            }
        ]
    }
    return compile_rules(RoutingDocument.model_validate(document), version="bench")


async def cpu_per_event(events: int, work: Callable[[], Awaitable[None]]) -> float:
    """Milliseconds of this process's CPU per event that `work` handled."""
    started = time.process_time()
    await work()
    return (time.process_time() - started) * 1000 / events


async def bench_scored(storage: Storage, context: RouterContext, *, batch: int, leads: int) -> tuple[float, list[Any]]:
    """CPU per lead of on_lead_scored in batches; the sla.started events the sla-monitor would answer with."""
    batches = [[new_event(scored_lead(), source="bench") for _ in range(batch)] for _ in range(leads // batch)]

    async def work() -> None:
        for events in batches:
            async with storage.sessions() as session, session.begin():
                await on_lead_scored(events, session, context=context)

    cost = await cpu_per_event(len(batches) * batch, work)
    lead_ids = [event.data.lead_id for events in batches for event in events]
    return cost, lead_ids


async def started_events(storage: Storage, lead_ids: list[str]) -> list[Any]:
    """One sla.started per assignment of these leads."""
    async with storage.sessions() as session:
        rows = (await session.exec(select(Assignment).where(col(Assignment.lead_id).in_(lead_ids)))).all()
    now = utcnow()
    return [
        new_event(
            SlaStarted(
                lead_id=row.lead_id,
                obligation="first_touch",
                assignment_id=row.id,
                rep_id=row.rep_id or "",
                due_at=now + timedelta(minutes=5),
                started_at=now,
            ),
            source="bench",
        )
        for row in rows
    ]


async def bench_started(storage: Storage, context: RouterContext, events: list[Any], *, batch: int) -> float:
    """CPU per event of on_sla_started in batches."""

    async def work() -> None:
        for start in range(0, len(events), batch):
            async with storage.sessions() as session, session.begin():
                await on_sla_started(events[start : start + batch], session, context=context)

    return await cpu_per_event(len(events), work)


async def bench_deliveries(sender: Sender, *, expected: int, limit: int) -> float:
    """CPU per delivery of the delivery job's rounds until every due delivery is sent."""
    sent = 0

    async def work() -> None:
        nonlocal sent
        while True:
            claimed = await sender.claim_round(limit=limit, lease_seconds=60)
            if not claimed.claimed:
                return
            await sender.deliver_all(claimed)
            sent += len(claimed.claimed)

    cost = await cpu_per_event(expected, work)
    assert sent == expected, (sent, expected)
    return cost


@contextlib.contextmanager
def bare_endpoint() -> Iterator[str]:
    """ENDPOINT running in a child process (its CPU is not this process's), as the URL to POST to."""
    endpoint = subprocess.Popen([sys.executable, "-c", ENDPOINT], stdout=subprocess.PIPE, text=True)
    try:
        assert endpoint.stdout is not None
        yield f"http://127.0.0.1:{int(endpoint.stdout.readline())}/hook"
    finally:
        endpoint.terminate()
        endpoint.wait()


async def run(args: argparse.Namespace) -> list[str]:
    """Set up the database and endpoint; time each handler per batch size and ruleset."""
    with bare_endpoint() as hook:
        return await measure(args, hook)


async def measure(args: argparse.Namespace, hook: str) -> list[str]:
    """The figures, one line per handler, ruleset and batch size."""
    # Deliveries wait for their deadline until sla.started makes them due, as in the pipeline.
    settings = RouterSettings(_env_file=None, LEADRELAY_SECRET_KEY=SECRET_KEY, notify_sla_wait_seconds=600.0)
    lines = [f"router per-lead path on {args.url.split(':')[0]}: ms of process CPU per event, median of {args.rounds}"]
    async with migrated(args.url, migrations_of("router")) as storage:
        await setup(storage, hook)
        for name, rules in (("built-in", None), ("pool of 10", pool_rules())):
            context = RouterContext.of(settings)
            if rules is not None:
                context.rulesets.builtin = rules
            # The delivery job's transport, with connections for a whole round of 50.
            async with delivery_transport(settings.model_copy(update={"notify_concurrency": 50})) as transport:
                sender = Sender(storage.sessions, context, NotificationMetrics(CollectorRegistry()), transport,
                                channel_box(SECRET_KEY))  # fmt: skip
                for batch in (1, 10, 50):
                    scored, started, delivered = [], [], []
                    for _ in range(args.rounds + 1):  # the first warms caches and connections up
                        cost, lead_ids = await bench_scored(storage, context, batch=batch, leads=args.leads)
                        scored.append(cost)
                        events = await started_events(storage, lead_ids)
                        started.append(await bench_started(storage, context, events, batch=batch))
                        delivered.append(await bench_deliveries(sender, expected=len(events), limit=batch))
                    del scored[0], started[0], delivered[0]
                    lines.append(
                        f"  {name:<10} batch {batch:>2}: lead.scored {statistics.median(scored):.3f}"
                        f"  sla.started {statistics.median(started):.3f}"
                        f"  delivery (round of {batch}) {statistics.median(delivered):.3f}"
                    )
    return lines


def main() -> None:
    """Time the handlers and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=None, help="a database URL (default: a SQLite file in a temporary folder)")
    parser.add_argument("--leads", type=int, default=600, help="leads per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        args.url = args.url or f"sqlite+aiosqlite:///{Path(folder) / 'router.db'}"
        for line in asyncio.run(run(args)):
            print(line, flush=True)  # noqa: T201  (a benchmark prints its figures)


if __name__ == "__main__":
    main()
