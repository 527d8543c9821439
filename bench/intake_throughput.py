"""Benchmark: durable leads per second accepted by one intake process, with and without group commit.

Run: .venv/bin/python bench/intake_throughput.py [--seconds 8] [--concurrency 64] [--runs 3] [--postgres URL]
It starts the embedded broker and intake as a real process and loads POST /v1/leads with wrk
(Debian package `wrk`; Python HTTP clients saturate before intake does), then prints the median
of the runs. wrk shares the machine's cores with intake.
"""

import argparse
import asyncio
import shutil
import statistics
import tempfile
from pathlib import Path
from uuid import uuid4

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


async def post_leads(url: str, seconds: float, concurrency: int, workdir: Path) -> float:
    """Load POST /v1/leads for `seconds` with `concurrency` connections; returns accepted leads per second."""
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT.format(key=DEV_API_KEY, token=uuid4().hex[:8]))
    process = await asyncio.create_subprocess_exec(
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{seconds}s",
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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres", help="an empty PostgreSQL database URL (postgresql+asyncpg://...)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("this benchmark needs wrk: apt-get install wrk")
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        broker = EmbeddedBroker(free_port())
        broker.start()
        try:
            backends = {"sqlite": lambda name: f"sqlite+aiosqlite:///{workdir}/{name}.db"}
            if args.postgres:
                backends["postgres"] = lambda _name: args.postgres
            for backend, url_for in backends.items():
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
