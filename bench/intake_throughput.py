"""Benchmark: durable leads per second accepted by one intake process, with and without group commit,
and through POST /v1/leads beside signed webhooks.

Run: .venv/bin/python bench/intake_throughput.py [--seconds 8] [--concurrency 64] [--runs 3] [--postgres URL]
         [--compare group-commit,webhooks] [--webhook-paths standard,hubspot] [--paths-group-commit 256]
It starts the embedded broker and intake as a real process and loads it with wrk (Debian package
`wrk`; Python HTTP clients saturate before intake does), then prints the median of the runs. wrk
shares the machine's cores with intake.

- group-commit: POST /v1/leads with GROUP_COMMIT_MAX_BATCH=1 (one transaction per request) and 256.
- webhooks: one intake (default group commit) and one database; POST /v1/leads with the API key
  and POST /v1/webhooks/demo-<kind> with a valid, fresh signature and a new delivery on every
  request, all sent by the same wrk script from pre-built requests (bench/signed_load.py), the
  paths alternating run by run; prints leads/s, p50/p99 and each webhook path's ratio to REST.
"""

import argparse
import asyncio
import math
import shutil
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

import signed_load

from leadrelay.broker import EmbeddedBroker
from leadrelay.testing import DEV_API_KEY, ServiceProcess, free_port

# A new person on every request: intake keeps one lead per person, so a repeated email would
# measure re-engagements of one row instead of new leads.
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, nil, nil, string.format(
    '{{"email":"bench-{token}-%d@example.com","company":"Analytical","job_title":"CTO","source":"bench"}}',
    counter))
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d\\n", summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout,
    summary.duration, latency:percentile(50)))
end
"""


def names(text: str) -> list[str]:
    """'a,b' -> ['a', 'b']."""
    return [part.strip() for part in text.split(",") if part.strip()]


async def post_leads(url: str, seconds: float, concurrency: int, workdir: Path) -> float:
    """Load POST /v1/leads for `seconds` with `concurrency` connections; returns accepted leads per second."""
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT.format(key=DEV_API_KEY, token=uuid4().hex[:8]))
    process = await asyncio.create_subprocess_exec(
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{seconds:g}s",
        "-s",
        str(script),
        f"{url}/v1/leads",
        stdout=asyncio.subprocess.PIPE,
    )
    output, _ = await process.communicate()
    line = next(line for line in output.decode().splitlines() if line.startswith("RESULT"))
    requests, errors, duration_us, _p50_us = (int(part) for part in line.split()[1:])
    if errors:
        raise RuntimeError(f"{errors} failed requests")
    return requests / (duration_us / 1_000_000)


async def measure(
    database_url: str, group_commit: int, args: argparse.Namespace, workdir: Path, broker: EmbeddedBroker
) -> float:
    intake = ServiceProcess(
        "intake",
        port=free_port(),
        workdir=workdir,
        env={
            "DATABASE_URL": database_url,
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "LEADRELAY_DEV_API_KEY": DEV_API_KEY,
            "GROUP_COMMIT_MAX_BATCH": str(group_commit),
            "LOG_LEVEL": "WARNING",
            # Capacity is measured with one key and one source: no per-key or per-source limit.
            "RATE_LIMIT_PER_KEY_PER_SECOND": "0",
            "WEBHOOK_RATE_PER_SOURCE_PER_SECOND": "0",
        },
    )
    intake.start()
    try:
        await intake.wait_healthy()
        await post_leads(intake.url, 1, args.concurrency, workdir)  # warm-up
        rates = [await post_leads(intake.url, args.seconds, args.concurrency, workdir) for _ in range(args.runs)]
    finally:
        await intake.stop()
    return statistics.median(rates)


async def measure_paths(
    database_url: str, args: argparse.Namespace, workdir: Path, broker: EmbeddedBroker
) -> dict[str, dict[str, Any]]:
    """REST and each webhook path against one intake process and database; the median run of each."""
    intake = ServiceProcess(
        "intake",
        port=free_port(),
        workdir=workdir,
        env={
            "DATABASE_URL": database_url,
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "LEADRELAY_DEV_API_KEY": DEV_API_KEY,
            "LOG_LEVEL": "WARNING",
            # Capacity is measured with one key and one source per path: no per-key or per-source limit.
            "RATE_LIMIT_PER_KEY_PER_SECOND": "0",
            "WEBHOOK_RATE_PER_SOURCE_PER_SECOND": "0",
            "GROUP_COMMIT_MAX_BATCH": str(args.paths_group_commit),
        },
        name="intake-paths",
    )
    intake.start()
    try:
        await intake.wait_healthy()
        return await signed_load.compare(
            intake.url,
            ["rest", *args.webhook_paths],
            runs=args.runs,
            seconds=math.ceil(args.seconds),
            connections=args.concurrency,
            threads=1,
            max_rate=args.max_rate,
            workdir=workdir,
            server_pid=intake.pid,
        )
    finally:
        await intake.stop()


def print_paths(backend: str, results: dict[str, dict[str, Any]]) -> None:
    """Leads/s, latency and the ratio to REST of every path."""
    rest = results["rest"]["median_per_s"]
    for path_name, figures in results.items():
        runs = ", ".join(f"{rate:.0f}" for rate in figures["runs"])
        line = (
            f"{backend:8} {path_name:9} median {figures['median_per_s']:7.0f} leads/s ({runs})"
            f"  p50 {figures['p50_ms']:6.1f} ms  p99 {figures['p99_ms']:6.1f} ms"
            f"  non-2xx {figures['non_2xx_all_runs']} (all runs)"
            f"  ratio to rest {figures['median_per_s'] / rest:.2f}x (paired {figures['paired_ratio'] or 0:.2f}x)"
            f"  intake CPU {figures['cpu_ms_per_lead'] or 0:.2f} ms/lead ({figures['cpu_ratio'] or 0:.2f}x rest)"
        )
        print(line, flush=True)  # noqa: T201  (a benchmark prints its figures)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres", help="an empty PostgreSQL database URL (postgresql+asyncpg://...)")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only (with --postgres)")
    parser.add_argument("--compare", type=names, default=["group-commit", "webhooks"], help="group-commit,webhooks")
    parser.add_argument("--webhook-paths", type=names, default=["standard", "hubspot"], help="standard,hubspot")
    parser.add_argument(
        "--paths-group-commit",
        type=int,
        default=256,
        help="GROUP_COMMIT_MAX_BATCH of the webhooks comparison's intake (1: REST commits per request, as webhooks do)",
    )
    parser.add_argument("--max-rate", type=int, default=4000, help="signed requests built per second of a run")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("this benchmark needs wrk: apt-get install wrk")
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        broker = EmbeddedBroker(free_port())
        broker.start()
        try:
            backends: dict[str, Callable[[str], str]] = {}
            if not args.no_sqlite:
                backends["sqlite"] = lambda name: f"sqlite+aiosqlite:///{workdir}/{name}.db"
            if args.postgres:
                backends["postgres"] = lambda _name: args.postgres
            for backend, url_for in backends.items():
                if "webhooks" in args.compare:
                    print_paths(backend, await measure_paths(url_for("intake-paths"), args, workdir, broker))
                if "group-commit" not in args.compare:
                    continue
                results = {}
                for group_commit in (1, 256):
                    results[group_commit] = await measure(
                        url_for(f"intake-{group_commit}"), group_commit, args, workdir, broker
                    )
                    rate = results[group_commit]
                    line = f"{backend:8} group_commit_max_batch={group_commit:<4} median {rate:7.0f} leads/s"
                    print(line, flush=True)  # noqa: T201  (a benchmark prints its figures)
                print(f"{backend:8} ratio grouped/ungrouped: {results[256] / results[1]:.2f}x", flush=True)  # noqa: T201
        finally:
            broker.stop()


if __name__ == "__main__":
    asyncio.run(main())
