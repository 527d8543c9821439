"""Burst benchmark: a list upload of N leads as fast as intake takes them, until every one is routed.

Run: .venv/bin/python bench/burst.py [--backend postgres|sqlite] [--leads 10000] [--concurrency 64]

Starts the embedded broker and the four services (as bench/pipeline.py does), posts N leads with
`concurrency` requests in flight, then waits until every lead reached `sla.started`. Reports the
accept phase (leads/s, any non-2xx or 5xx), the drain (seconds until the last lead was routed after
the last was accepted), `lead.received` records per lead on the topic (1 means nothing was
re-published) and intake's re-drive counters, with REDRIVE_AFTER_SECONDS=1 so that re-drive looks
at every lead queued longer than a second.
"""

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path

from loadgen import HttpPool
from pipeline import SERVICES, lead_body, out, scratch_postgres, service_env, wait_for_topics

from leadrelay.broker import EmbeddedBroker
from leadrelay.testing import DEV_API_KEY, ServiceProcess, free_port, metric_value, read_to_end


async def burst(args: argparse.Namespace) -> dict[str, object]:
    """Run one burst; returns its figures."""
    os.environ.setdefault("REDRIVE_AFTER_SECONDS", "1")
    os.environ.setdefault("REDRIVE_CHECK_INTERVAL_SECONDS", "1")
    workdir = Path(tempfile.mkdtemp(prefix="leadrelay-burst-"))
    async with AsyncExitStack() as cleanup:
        broker = EmbeddedBroker(free_port(), log=workdir / "broker.log")
        broker.start()
        cleanup.callback(broker.stop)
        if args.backend == "postgres":
            urls = await cleanup.enter_async_context(scratch_postgres(args.postgres_url, list(SERVICES)))
        else:
            urls = {name: f"sqlite+aiosqlite:///{workdir / name}.db" for name in SERVICES}
        services = {
            name: ServiceProcess(
                module, port=free_port(), workdir=workdir, env=service_env(broker.bootstrap_servers, urls[name])
            )
            for name, module in SERVICES.items()
        }
        for process in services.values():
            process.start()
            cleanup.push_async_callback(process.stop)
        await asyncio.gather(*(process.wait_healthy(60) for process in services.values()))
        await wait_for_topics(broker.bootstrap_servers)
        intake = services["intake"]

        pool = HttpPool("127.0.0.1", intake.port, max_connections=args.concurrency)
        body = lead_body("burst")
        statuses: Counter[int] = Counter()
        slots = asyncio.Semaphore(args.concurrency)
        headers = {"Authorization": f"Bearer {DEV_API_KEY}"}

        async def post(index: int) -> None:
            async with slots:
                status, _ = await pool.post_json("/v1/leads", json.dumps(body(index)).encode(), headers)
                statuses[status] += 1

        started = time.monotonic()
        await asyncio.gather(*(post(index) for index in range(args.leads)))
        accepted_in = time.monotonic() - started
        accepted = sum(count for status, count in statuses.items() if 200 <= status < 300)

        timers = 0.0
        while timers < accepted and time.monotonic() - started < args.timeout:
            await asyncio.sleep(0.5)  # pacing the progress report, not waiting for a condition to hope
            timers = await metric_value(
                services["sla-monitor"].url,
                "leadrelay_events_consumed_total",
                {"type": "lead.assigned", "outcome": "processed"},
            )
        routed_in = time.monotonic() - started
        records = await read_to_end(broker.bootstrap_servers, "leads.received", timeout=120)
        per_lead = Counter((record.key or b"").decode() for record in records)
        checked = await metric_value(intake.url, "leadrelay_leads_checked_in_broker_total")
        redriven = await metric_value(intake.url, "leadrelay_leads_redriven_total")
        return {
            "backend": args.backend,
            "leads": args.leads,
            "accepted": accepted,
            "statuses": dict(statuses),
            "accept_seconds": round(accepted_in, 1),
            "accepted_per_s": round(accepted / accepted_in),
            "routed_seconds": round(routed_in, 1),
            "drain_after_last_accept_seconds": round(routed_in - accepted_in, 1),
            "lead_assigned_consumed_by_sla_monitor": int(timers),
            "lead_received_per_lead": dict(Counter(per_lead.values())),
            "checked_in_broker": int(checked),
            "redriven": int(redriven),
        }


def main() -> int:
    """Parse flags, run the burst, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"),
    )
    figures = asyncio.run(burst(parser.parse_args()))
    out(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
