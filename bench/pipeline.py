"""Pipeline benchmark: speed-to-lead, sustained leads per second and intake throughput, each beside a baseline.

Run: .venv/bin/python bench/pipeline.py [--backend all|sqlite|postgres] [--rates 50,200] [--duration 20]
         [--steps 25,50,100,200,400,800,1600] [--step-duration 8] [--step-bound 5]
         [--wrk-seconds 4] [--wrk-runs 3] [--webhook-paths standard,hubspot] [--json FILE]
(`make bench` runs it with the defaults; BENCH_ARGS="..." passes flags.)

For each backend it starts a fresh embedded broker and the four services as real processes
(`python -m intake` ...), each on its own scratch database (SQLite files in a temporary folder, or
PostgreSQL databases created on --postgres-url and dropped afterwards), then measures:

- speed-to-lead at fixed rates: an open-loop generator (bench/loadgen.py) sends leads on schedule
  and a group-less consumer in this process sees each lead's lead.assigned arrive; latency runs from
  the scheduled send. It ends where the product's promise ends: the rep's webhook (a bare HTTP
  endpoint in this process, the channel of the built-in ruleset's rep) receiving the notification.
  The router's CloudEvent `time` is a second view, and the `time` fields of
  lead.received, lead.scored, lead.assigned and sla.started give each hop. Baseline: a raw
  produce-to-consume round trip on the same broker (acks=all, fetching and lingering as the
  services do) times the three hops to lead.assigned. With each rate, the CPU per lead of every
  service, the broker and, when PostgreSQL runs on this machine, the server processes of the
  services' connections.
- sustained leads/s: rising rates, a short step each; a step holds when every lead sent in it
  reached sla.started within --step-bound seconds of the step's end. Baseline: intake alone (wrk).
- intake's accepted leads/s under wrk (64 connections) while the rest of the stack runs, beside a
  bare FastAPI endpoint (bench/bare_intake.py) with the same uvicorn settings.
- the signed-webhook paths (POST /v1/webhooks/demo-<kind>, a valid fresh signature and a new
  delivery per request) beside POST /v1/leads, on the same intake and database and through the
  same wrk script sending pre-built requests (bench/signed_load.py): leads/s, p50/p99, ratio.

Only HTTP, Kafka topics, `leadrelay.broker.EmbeddedBroker` and `leadrelay.testing.free_port /
ServiceProcess / DEV_API_KEY` are used, so the script keeps working as the services change. The
services get this process's environment (so INTAKE_WORKERS=4 ... reaches them), with LOG_LEVEL
defaulting to WARNING.
"""

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import signed_load
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from loadgen import HttpPool, LoadRun, WallClock, open_loop
from sqlalchemy import make_url

from leadrelay.broker import EmbeddedBroker
from leadrelay.testing import DEV_API_KEY, ServiceProcess, free_port

BENCH_DIR = Path(__file__).resolve().parent
# The observer and the round-trip baseline fetch and produce as the services do (their defaults of
# KAFKA_FETCH_MAX_WAIT_MS and KAFKA_LINGER_MS), so the baseline is the broker's own cost per hop.
FETCH_MAX_WAIT_MS = int(os.environ.get("KAFKA_FETCH_MAX_WAIT_MS", "50"))
LINGER_MS = int(os.environ.get("KAFKA_LINGER_MS", "1"))
SERVICES = {"intake": "intake", "scoring": "scoring", "router": "router", "sla-monitor": "sla_monitor"}
EVENT_TOPICS = {
    "lead.received": "leads.received",
    "lead.scored": "leads.scored",
    "lead.assigned": "leads.assigned",
    "sla.started": "sla.events",
}
HOPS_TO_ASSIGNED = 3  # intake -> scoring -> router -> (leads.assigned)


def out(line: str = "") -> None:
    """A benchmark writes its figures to stdout."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summary_ms(values: list[float]) -> dict[str, float | int | None]:
    """p50, p99 and max of seconds, in milliseconds."""

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 1)

    return {
        "n": len(values),
        "p50_ms": ms(percentile(values, 50)),
        "p99_ms": ms(percentile(values, 99)),
        "max_ms": ms(max(values) if values else None),
    }


def event_time(value: str) -> float:
    """A CloudEvent `time` (RFC 3339) as seconds since the epoch."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class Observer:
    """A group-less consumer of the pipeline's topics: per lead id and event type, arrival and event time."""

    def __init__(self, bootstrap_servers: str, clock: WallClock) -> None:
        self.events: dict[str, dict[str, tuple[float, float]]] = {}
        self._clock = clock
        self._consumer = AIOKafkaConsumer(
            *sorted(set(EVENT_TOPICS.values())),
            bootstrap_servers=bootstrap_servers,
            group_id=None,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start consuming from the beginning of every topic."""
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=200)
            arrived = self._clock.now()
            for records in batch.values():
                for record in records:
                    try:
                        event = json.loads(record.value or b"")
                        subject, kind, at = event["subject"], event["type"], event_time(event["time"])
                    except (ValueError, KeyError, TypeError):
                        continue
                    self.events.setdefault(subject, {}).setdefault(kind, (arrived, at))  # first delivery counts
            if batch:
                self._changed.set()

    def record(self, lead_id: str, kind: str, arrived: float) -> None:
        """Record something seen outside Kafka (a notification) as if it were an event."""
        self.events.setdefault(lead_id, {}).setdefault(kind, (arrived, arrived))
        self._changed.set()

    async def wait_all(self, lead_ids: list[str], event_type: str, timeout: float) -> set[str]:
        """Wait until every lead has `event_type` or `timeout` passed; returns the leads still missing it."""
        pending = set(lead_ids)
        deadline = time.monotonic() + timeout
        while True:
            if self._task is not None and self._task.done():
                self._task.result()  # the consumer failed: raise its error
                raise RuntimeError("observer stopped")
            self._changed.clear()
            pending = {lead_id for lead_id in pending if event_type not in self.events.get(lead_id, {})}
            remaining = deadline - time.monotonic()
            if not pending or remaining <= 0:
                return pending
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def stop(self) -> None:
        """Stop the consumer."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()


class NotificationSink:
    """A bare HTTP/1.1 endpoint standing in for a rep's webhook: records when each lead's notification lands.

    Arrivals go into the observer as the pseudo event type "notified", so `wait_all` waits on them too.
    Deliberately minimal (no signature check, keep-alive, 204) so it costs the measurement nothing.
    """

    def __init__(self, observer: Observer, clock: WallClock) -> None:
        self._observer, self._clock = observer, clock
        self._server: asyncio.Server | None = None
        self.port = free_port()

    @property
    def url(self) -> str:
        """Where the rep's webhook channel points."""
        return f"http://127.0.0.1:{self.port}/reps/bench"

    async def start(self) -> None:
        """Listen."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                body = await reader.readexactly(length)
                arrived = self._clock.now()
                writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    self._observer.record(json.loads(body)["lead_id"], "notified", arrived)
        writer.close()

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def tell_default_rep(router_url: str, sink: NotificationSink) -> None:
    """Give the built-in ruleset's rep (every lead goes to it) a webhook channel pointing at the sink."""
    rep = {
        "name": "Default rep",
        "teams": ["default"],
        "channels": [
            {"kind": "webhook", "url": sink.url, "secret": "whsec_" + "YmVuY2gtc2VjcmV0LWtleS0wMTIzNDU2Nzg5YWI="}
        ],
    }
    headers = {"Authorization": f"Bearer {DEV_API_KEY}"}
    async with httpx.AsyncClient(base_url=router_url, headers=headers, timeout=10) as client:
        deadline = time.monotonic() + 30
        while True:  # the router learns the dev key from intake through the broker
            answer = await client.put("/v1/reps/rep-default", json=rep)
            if answer.status_code in (200, 201):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not give rep-default a channel: {answer.status_code} {answer.text}")
            await asyncio.sleep(0.5)


async def wait_for_topics(bootstrap_servers: str, timeout: float = 60.0) -> None:
    """Wait until the services created the pipeline's topics (so nothing here auto-creates them)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        wanted = set(EVENT_TOPICS.values())
        while not wanted <= set(await admin.list_topics()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the services did not create {sorted(wanted)} within {timeout}s")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def kafka_round_trip(bootstrap_servers: str, samples: int) -> list[float]:
    """Produce-to-consume times (seconds) on the broker, with the services' producer and consumer settings.

    Messages leave at random gaps (5-45 ms) while a consumer polls all along, as events reach a
    service's consumer at any point of its fetch cycle. (Sending the next message only after the
    previous one arrived would line every send up with the start of a fetch, which on Tansu, which
    answers a fetch only after about half of fetch.max.wait.ms, measures that wait every time.)
    """
    topic = f"bench.round-trip.{uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", linger_ms=LINGER_MS)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )
    arrived: dict[bytes | None, float] = {}
    everything = asyncio.Event()
    total = samples + 20  # the first 20 warm up the connections

    async def consume() -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=1000)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    arrived.setdefault(record.value, now)
            if len(arrived) >= total:
                everything.set()

    await producer.start()
    try:
        await consumer.start()
        consumer.assign([TopicPartition(topic, 0)])
        reader = asyncio.create_task(consume())
        try:
            gaps = random.Random(7)
            sent: dict[bytes | None, float] = {}
            for index in range(total):
                await asyncio.sleep(gaps.uniform(0.005, 0.045))  # pacing: sends at random phases
                payload = f"{index}".encode()
                sent[payload] = time.perf_counter()
                await producer.send_and_wait(topic, payload)
            await asyncio.wait_for(everything.wait(), 30)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        return [arrived[f"{index}".encode()] - sent[f"{index}".encode()] for index in range(20, total)]
    finally:
        await consumer.stop()
        await producer.stop()


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer @KEY@"
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
local counter = 0
function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, string.format(
    '{"email":"wrk-@TOKEN@-%d-%d@example.com","company":"Bench Company","job_title":"CTO","source":"bench"}',
    tid, counter))
end
function done(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d %d\\n", summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.duration, latency:percentile(50), latency:percentile(99)))
end
"""


async def run_wrk(url: str, *, seconds: int, connections: int, threads: int, workdir: Path) -> dict[str, Any]:
    """POST unique leads with wrk (closed loop); accepted (2xx) per second and wrk's latency."""
    token = uuid4().hex[:10]
    script = workdir / f"wrk-{token}.lua"
    script.write_text(WRK_SCRIPT.replace("@KEY@", DEV_API_KEY).replace("@TOKEN@", token))
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "-s", str(script), f"{url}/v1/leads"]
    process = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        output, _ = await asyncio.wait_for(process.communicate(), seconds + 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    line = next((line for line in output.decode().splitlines() if line.startswith("RESULT")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{output.decode()}")
    requests, non_2xx, socket_errors, duration_us, p50_us, p99_us = (int(part) for part in line.split()[1:])
    return {
        "requests": requests,
        "non_2xx": non_2xx,
        "socket_errors": socket_errors,
        "accepted_per_s": round((requests - non_2xx) / (duration_us / 1e6), 1),
        "p50_ms": p50_us / 1000,
        "p99_ms": p99_us / 1000,
    }


@asynccontextmanager
async def scratch_postgres(admin_url: str, names: list[str]) -> AsyncIterator[dict[str, str]]:
    """One new database per name on the server of `admin_url`, dropped on exit."""
    url = make_url(admin_url)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    created: list[str] = []
    try:
        connection = await asyncpg.connect(dsn, timeout=5)
        try:
            for name in names:
                database = f"lr_bench_{name.replace('-', '_')}_{uuid4().hex[:8]}"
                await connection.execute(f'CREATE DATABASE "{database}"')
                created.append(database)
        finally:
            await connection.close()
        yield {
            name: url.set(database=database).render_as_string(hide_password=False)
            for name, database in zip(names, created, strict=True)
        }
    finally:
        if created:
            connection = await asyncpg.connect(dsn, timeout=5)
            try:
                for database in created:
                    await connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            finally:
                await connection.close()


async def postgres_server_cpu(admin_url: str, databases: list[str]) -> dict[int, float]:
    """CPU seconds used so far by each server process serving `databases`; none when the server is not on this machine.

    Only the connections' own processes: PostgreSQL's shared ones (WAL writer, checkpointer,
    autovacuum) serve every database and are left out.
    """
    dsn = make_url(admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn, timeout=5)
    try:
        rows = await connection.fetch("SELECT pid FROM pg_stat_activity WHERE datname = ANY($1::text[])", databases)
    finally:
        await connection.close()
    cpu: dict[int, float] = {}
    for row in rows:
        proc = Path("/proc") / str(row["pid"])
        with contextlib.suppress(OSError):  # not on this machine, or the connection ended meanwhile
            if (proc / "comm").read_text().strip() == "postgres":
                cpu[row["pid"]] = signed_load.process_cpu(row["pid"])  # a backend has no children
    return cpu


async def postgres_reachable(admin_url: str) -> str | None:
    """None when PostgreSQL answers, else why not."""
    dsn = make_url(admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        connection = await asyncpg.connect(dsn, timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        return repr(exc)
    await connection.close()
    return None


def lead_body(prefix: str) -> Callable[[int], dict[str, str]]:
    """Lead bodies with a unique email each."""

    def body(index: int) -> dict[str, str]:
        return {
            "email": f"bench-{prefix}-{index}@example.com",
            "company": f"Bench Company {index % 97}",
            "job_title": "CTO",
            "source": "bench",
        }

    return body


@dataclass
class BackendResult:
    """Every figure measured on one storage backend."""

    backend: str
    kafka_round_trip: dict[str, Any] = field(default_factory=dict)
    speed_to_lead: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    sustained_per_s: float | None = None
    wrk: dict[str, Any] = field(default_factory=dict)
    webhooks: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    load_average: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None


def request_counts(run: LoadRun) -> dict[str, Any]:
    """What intake answered during an open-loop run."""
    sent = len(run.leads)
    last = max((lead.dispatched for lead in run.leads), default=0.0)
    first = min((lead.scheduled for lead in run.leads), default=0.0)
    return {
        "rate": run.rate,
        "sent": sent,
        "accepted": len(run.accepted),
        "non_2xx": run.non_2xx,
        "5xx": run.server_errors,
        "no_answer": run.failed,
        "send_rate_per_s": round((sent - 1) / (last - first), 1) if sent > 1 and last > first else None,
        "dispatch_lag": summary_ms(run.dispatch_lag),
        "error_samples": sorted({lead.error or f"HTTP {lead.status}" for lead in run.leads if lead.lead_id is None})[
            :5
        ],
    }


def speed_figures(run: LoadRun, observer: Observer, missing: set[str]) -> dict[str, Any]:
    """Speed-to-lead and per-hop latencies of one open-loop run."""
    to_assigned, to_assigned_by_time, to_started, to_notified, http = [], [], [], [], []
    hops: dict[str, list[float]] = {"intake": [], "scoring": [], "router": [], "sla-monitor": []}
    for lead in run.accepted:
        assert lead.lead_id is not None
        assert lead.answered is not None
        http.append(lead.answered - lead.scheduled)
        seen = observer.events.get(lead.lead_id, {})
        if "lead.assigned" in seen:
            to_assigned.append(seen["lead.assigned"][0] - lead.scheduled)
            to_assigned_by_time.append(seen["lead.assigned"][1] - lead.scheduled)
        if "sla.started" in seen:
            to_started.append(seen["sla.started"][0] - lead.scheduled)
        if "notified" in seen:
            to_notified.append(seen["notified"][0] - lead.scheduled)
        times = {kind: at for kind, (_arrived, at) in seen.items()}
        if times.keys() >= EVENT_TOPICS.keys():
            hops["intake"].append(times["lead.received"] - lead.scheduled)
            hops["scoring"].append(times["lead.scored"] - times["lead.received"])
            hops["router"].append(times["lead.assigned"] - times["lead.scored"])
            hops["sla-monitor"].append(times["sla.started"] - times["lead.assigned"])
    return {
        **request_counts(run),
        "duration_s": run.duration,
        "missing_sla_started": len(missing),
        "http_answer": summary_ms(http),
        "to_assigned_arrival": summary_ms(to_assigned),
        "to_assigned_event_time": summary_ms(to_assigned_by_time),
        "to_sla_started_arrival": summary_ms(to_started),
        "to_notified_arrival": summary_ms(to_notified),
        "hops_by_event_time": {name: summary_ms(values) for name, values in hops.items()},
    }


def service_env(bootstrap_servers: str, database_url: str) -> dict[str, str]:
    """A service's environment: this process's (so new settings pass through), the broker and its database."""
    return {
        "LOG_LEVEL": "WARNING",
        # The product's default (the test helpers run one): one per core, one on SQLite.
        "INTAKE_WORKERS": "1" if database_url.startswith("sqlite") else str(os.cpu_count() or 1),
        "RATE_LIMIT_PER_KEY_PER_SECOND": "0",  # capacity is measured with one key: no per-key limit
        "WEBHOOK_RATE_PER_SOURCE_PER_SECOND": "0",  # nor one source per webhook path: no per-source limit
        **os.environ,  # also wins over ServiceProcess's fast test timings when exported
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
        "DATABASE_URL": database_url,
        "LEADRELAY_DEV_API_KEY": DEV_API_KEY,
    }


async def bench_backend(backend: str, args: argparse.Namespace, workdir: Path) -> BackendResult:
    """Start a broker and the stack on `backend`, measure everything, stop everything."""
    result = BackendResult(backend)
    load_at_start = os.getloadavg()
    async with AsyncExitStack() as cleanup:
        if backend == "postgres":
            urls = await cleanup.enter_async_context(scratch_postgres(args.postgres_url, list(SERVICES)))
        else:
            urls = {name: f"sqlite+aiosqlite:///{workdir / backend}-{name}.db" for name in SERVICES}

        broker = EmbeddedBroker(free_port(), log=workdir / f"broker-{backend}.log")
        broker.start()
        cleanup.callback(broker.stop)
        services = {
            name: ServiceProcess(
                module,
                port=free_port(),
                workdir=workdir,
                env=service_env(broker.bootstrap_servers, urls[name]),
                name=f"{backend}-{name}",
            )
            for name, module in SERVICES.items()
        }

        async def stop_services() -> None:
            await asyncio.gather(*(process.stop() for process in services.values()))

        cleanup.push_async_callback(stop_services)
        for process in services.values():
            process.start()
        await asyncio.gather(*(process.wait_healthy(timeout=60) for process in services.values()))
        await wait_for_topics(broker.bootstrap_servers)
        out(f"[{backend}] broker and services up; logs in {workdir}")

        clock = WallClock()
        observer = Observer(broker.bootstrap_servers, clock)
        await observer.start()
        cleanup.push_async_callback(observer.stop)
        sink = NotificationSink(observer, clock)
        await sink.start()
        cleanup.push_async_callback(sink.stop)
        await tell_default_rep(services["router"].url, sink)
        intake = services["intake"]
        pool = HttpPool("127.0.0.1", intake.port, max_connections=args.max_connections)
        cleanup.push_async_callback(pool.close)

        sent: list[str] = []  # every accepted lead so far

        async def load(rate: float, duration: float, label: str) -> LoadRun:
            run = await open_loop(
                pool,
                rate=rate,
                duration=duration,
                body=lead_body(f"{label}-{uuid4().hex[:8]}"),
                api_key=DEV_API_KEY,
                clock=clock,
            )
            sent.extend(lead.lead_id for lead in run.accepted if lead.lead_id)
            return run

        async def drain(run: LoadRun, timeout: float) -> set[str]:
            return await observer.wait_all(
                [lead.lead_id for lead in run.accepted if lead.lead_id], "sla.started", timeout
            )

        async def settle(phase: str) -> int:
            """Wait (up to --drain-timeout) until every lead sent so far is done; returns the leads that are not."""
            backlog = len(await observer.wait_all(sent, "sla.started", args.drain_timeout))
            if backlog:
                result.notes.append(f"{phase} started with {backlog} earlier leads not yet at sla.started")
                out(f"[{backend}] {phase}: {backlog} earlier leads still in the pipeline after {args.drain_timeout:g}s")
            return backlog

        # Warm-up: consumer groups joined, connections open, caches filled.
        warm = await load(20, 2, "warm")
        if len(warm.accepted) != len(warm.leads) or await drain(warm, 90):
            raise RuntimeError(f"warm-up leads did not go through the pipeline\n{logs(services)}")

        round_trips = await kafka_round_trip(broker.bootstrap_servers, args.round_trips)
        result.kafka_round_trip = summary_ms(round_trips)
        out(f"[{backend}] kafka round trip {fmt_summary(result.kafka_round_trip)}")

        pids = {name: process.pid for name, process in services.items() if process.pid is not None}
        if broker.pid is not None:
            pids["broker"] = broker.pid
        databases = [make_url(url).database or "" for url in urls.values()] if backend == "postgres" else []

        async def postgres_cpu() -> dict[int, float]:
            return await postgres_server_cpu(args.postgres_url, databases) if databases else {}

        for rate in args.rates:
            backlog = await settle(f"speed-to-lead at {rate:g}/s")
            cpu_before = {name: signed_load.process_tree_cpu(pid) for name, pid in pids.items()}
            server_before = await postgres_cpu()
            run = await load(rate, args.duration, f"speed{rate}")
            missing = await drain(run, args.drain_timeout)
            unnotified = await observer.wait_all(
                [lead.lead_id for lead in run.accepted if lead.lead_id], "notified", 30
            )
            cpu_seconds = {name: signed_load.process_tree_cpu(pid) - cpu_before[name] for name, pid in pids.items()}
            if server_after := await postgres_cpu():
                # A connection opened during the run counts from zero; one that closed is lost (pools keep theirs).
                cpu_seconds["postgres"] = sum(used - server_before.get(pid, 0.0) for pid, used in server_after.items())
            figures = {
                **speed_figures(run, observer, missing),
                "backlog_at_start": backlog,
                "missing_notification": len(unnotified),
                "cpu_ms_per_lead": {
                    name: round(1000 * seconds / len(run.accepted), 2)
                    for name, seconds in cpu_seconds.items()
                    if run.accepted
                },
            }
            result.speed_to_lead.append(figures)
            if figures["error_samples"]:
                out(f"[{backend}] {rate:g}/s: not accepted: {figures['error_samples']}")
            out(
                f"[{backend}] {rate:g}/s for {args.duration:g}s:"
                f" speed-to-lead {fmt_summary(figures['to_assigned_arrival'])}"
                f", to notification delivered {fmt_summary(figures['to_notified_arrival'])}"
                f", accepted {figures['accepted']}/{figures['sent']}, missing {len(missing)}"
            )
            out(
                f"[{backend}] {rate:g}/s: CPU per lead "
                + ", ".join(f"{name} {ms:.2f} ms" for name, ms in figures["cpu_ms_per_lead"].items())
            )

        previous: float | None = None
        steps = args.steps
        if await settle("sustained-rate steps"):
            result.notes.append("sustained rate not measured: the pipeline never caught up with the earlier leads")
            steps = []
        for rate in steps:
            run = await load(rate, args.step_duration, f"step{rate}")
            step_end = run.leads[-1].scheduled if run.leads else clock.now()
            missing = await drain(run, step_end + args.step_bound - clock.now())
            figures = speed_figures(run, observer, missing)
            held = not missing and len(run.accepted) == len(run.leads)
            result.steps.append({**figures, "held": held})
            if figures["error_samples"]:
                out(f"[{backend}] step {rate:g}/s: not accepted: {figures['error_samples']}")
            out(
                f"[{backend}] step {rate:g}/s: {'held' if held else 'fell behind'}"
                f" (to sla.started {fmt_summary(figures['to_sla_started_arrival'])},"
                f" accepted {figures['accepted']}/{figures['sent']}, late {len(missing)})"
            )
            if not held:
                break
            previous = rate
        else:
            if steps:
                result.notes.append("every step held: raise --steps to find the limit")
        result.sustained_per_s = previous

        if args.wrk_runs > 0:  # 0 skips intake's maximum under wrk
            bare = ServiceProcess("bare_intake", port=free_port(), workdir=workdir, env={"PYTHONPATH": str(BENCH_DIR)})
            bare.start()
            cleanup.push_async_callback(bare.stop)
            await bare.wait_healthy()
            backlog = await settle("wrk")
            wrk_runs: dict[str, list[dict[str, Any]]] = {"bare": [], "intake": []}
            for url in (bare.url, intake.url):  # warm-up
                await run_wrk(
                    url, seconds=1, connections=args.wrk_connections, threads=args.wrk_threads, workdir=workdir
                )
            for _ in range(args.wrk_runs):
                for target, url in (("bare", bare.url), ("intake", intake.url)):
                    wrk_runs[target].append(
                        await run_wrk(
                            url,
                            seconds=args.wrk_seconds,
                            connections=args.wrk_connections,
                            threads=args.wrk_threads,
                            workdir=workdir,
                        )
                    )
            await bare.stop()
            result.wrk = {
                target: {**runs[len(runs) // 2], "runs": [run["accepted_per_s"] for run in runs]}
                for target, runs in (
                    (target, sorted(runs, key=lambda run: run["accepted_per_s"])) for target, runs in wrk_runs.items()
                )
            }
            result.wrk["backlog_at_start"] = backlog
            out(
                f"[{backend}] wrk: intake {result.wrk['intake']['accepted_per_s']:.0f}/s,"
                f" bare FastAPI {result.wrk['bare']['accepted_per_s']:.0f}/s"
            )
        if args.webhook_paths and args.wrk_runs > 0:  # the signed paths are measured with wrk too
            await settle("webhooks")
            result.webhooks = await signed_load.compare(
                intake.url,
                ["rest", *args.webhook_paths],
                runs=args.wrk_runs,
                seconds=args.wrk_seconds,
                connections=args.wrk_connections,
                threads=args.wrk_threads,
                max_rate=args.webhook_max_rate,
                workdir=workdir,
                server_pid=intake.pid,
            )
            out(
                f"[{backend}] signed load: "
                + ", ".join(f"{name} {figures['median_per_s']:.0f}/s" for name, figures in result.webhooks.items())
            )
        for name, process in services.items():
            if not process.running:
                result.notes.append(f"{name} exited during the run")
        result.load_average = (load_at_start, os.getloadavg())
    return result


def logs(services: dict[str, ServiceProcess]) -> str:
    """Tails of the services' logs."""
    return "\n".join(f"--- {name}\n{process.log_tail()}" for name, process in services.items())


def fmt_ms(value: float | None) -> str:
    """Milliseconds for the table."""
    if value is None:
        return "n/a"
    return f"{value:,.0f} ms" if value >= 100 else f"{value:.1f} ms"


def fmt_summary(summary: dict[str, Any]) -> str:
    """p50 / p99 of a summary."""
    return f"p50 {fmt_ms(summary['p50_ms'])}, p99 {fmt_ms(summary['p99_ms'])}"


def ratio(measured: float | None, baseline: float | None) -> str:
    """measured / baseline."""
    if not measured or not baseline:
        return ""
    return f"{measured / baseline:.1f}x" if measured / baseline >= 10 else f"{measured / baseline:.2f}x"


def table(results: list[BackendResult]) -> list[str]:
    """The figures as a Markdown table: figure, measured, baseline, ratio."""
    rows = ["| backend | figure | measured | baseline (same run) | ratio |", "|---|---|---|---|---|"]
    for result in results:
        rtt = result.kafka_round_trip
        for run in result.speed_to_lead:
            rate = f"{run['rate']:g}/s"
            for q in ("p50", "p99"):
                base = rtt[f"{q}_ms"] * HOPS_TO_ASSIGNED
                for key, what in (
                    ("to_assigned_arrival", "arrival"),
                    ("to_assigned_event_time", "router's event time"),
                    ("to_notified_arrival", "notification delivered"),
                ):
                    value = run[key][f"{q}_ms"]
                    rows.append(
                        f"| {result.backend} | speed-to-lead {q} @ {rate} ({what}) | {fmt_ms(value)}"
                        f" | 3 x Kafka round trip {q} = {fmt_ms(base)} | {ratio(value, base)} |"
                    )
            for hop, values in run["hops_by_event_time"].items():
                base = rtt["p50_ms"]
                baseline = (
                    "send -> lead.received (HTTP + commit)" if hop == "intake" else f"1 x round trip {fmt_ms(base)}"
                )
                rows.append(
                    f"| {result.backend} | hop {hop} @ {rate} (event times, p50 / p99) "
                    f"| {fmt_ms(values['p50_ms'])} / {fmt_ms(values['p99_ms'])} | {baseline}"
                    f" | {'' if hop == 'intake' else ratio(values['p50_ms'], base)} |"
                )
            if run["missing_sla_started"] or run["non_2xx"] or run["no_answer"] or run["missing_notification"]:
                rows.append(
                    f"| {result.backend} | errors @ {rate} | non-2xx {run['non_2xx']} (5xx {run['5xx']}),"
                    f" no answer {run['no_answer']}, not at sla.started {run['missing_sla_started']},"
                    f" not notified {run['missing_notification']} | | |"
                )
        intake_wrk = result.wrk.get("intake", {}).get("accepted_per_s")
        bare_wrk = result.wrk.get("bare", {}).get("accepted_per_s")
        failed = next((step["rate"] for step in result.steps if not step["held"]), None)
        sustained = "n/a" if result.sustained_per_s is None else f"{result.sustained_per_s:g} leads/s"
        fell = "" if failed is None else f"; {failed:g}/s fell behind"
        rows.append(
            f"| {result.backend} | pipeline sustained (to sla.started{fell}) | {sustained}"
            f" | intake alone (wrk) {intake_wrk or 0:,.0f}/s | {ratio(result.sustained_per_s, intake_wrk)} |"
        )
        if intake_wrk is not None:
            rows.append(
                f"| {result.backend} | intake accepted leads/s (wrk, {result.wrk['intake']['requests']:,} requests,"
                f" non-2xx {result.wrk['intake']['non_2xx']}) | {intake_wrk:,.0f}/s"
                f" | bare FastAPI {bare_wrk or 0:,.0f}/s | {ratio(intake_wrk, bare_wrk)} |"
            )
        rest = result.webhooks.get("rest")
        for name, figures in result.webhooks.items():
            if name == "rest" or rest is None:
                continue
            rows.append(
                f"| {result.backend} | webhook {name} accepted leads/s, p50 / p99 (pre-built signed requests,"
                f" non-2xx {figures['non_2xx']}) | {figures['median_per_s']:,.0f}/s,"
                f" {fmt_ms(figures['p50_ms'])} / {fmt_ms(figures['p99_ms'])}"
                f" | POST /v1/leads, same generator: {rest['median_per_s']:,.0f}/s,"
                f" {fmt_ms(rest['p50_ms'])} / {fmt_ms(rest['p99_ms'])}"
                f" | {ratio(figures['median_per_s'], rest['median_per_s'])}"
                f" (paired {figures['paired_ratio'] or 0:.2f}x; intake CPU per lead {figures['cpu_ratio'] or 0:.2f}x) |"
            )
    return rows


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    memory_kb = next(
        (
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        0,
    )
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(memory_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_average_at_start": os.getloadavg(),
    }


def parse_rates(text: str) -> list[float]:
    """'50,200' -> [50.0, 200.0]."""
    return [float(part) for part in text.split(",") if part.strip()]


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--backend",
        choices=["all", "sqlite", "postgres"],
        default="all",
        help="all: SQLite, then PostgreSQL when --postgres-url answers (default)",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"),
        help="server on which scratch databases are created and dropped (default: TEST_DATABASE_URL or local test)",
    )
    parser.add_argument("--rates", type=parse_rates, default=[50.0, 200.0], help="speed-to-lead rates (leads/s)")
    parser.add_argument("--duration", type=float, default=20, help="seconds per speed-to-lead rate")
    parser.add_argument("--steps", type=parse_rates, default=[25.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1600.0])
    parser.add_argument("--step-duration", type=float, default=8, help="seconds per sustained-rate step")
    parser.add_argument("--step-bound", type=float, default=5, help="a step holds if its leads are done this soon")
    parser.add_argument("--drain-timeout", type=float, default=120, help="longest wait for a backlog to clear")
    parser.add_argument("--round-trips", type=int, default=200, help="Kafka round trips for the baseline")
    parser.add_argument("--max-connections", type=int, default=256, help="open-loop generator's connections")
    parser.add_argument("--wrk-seconds", type=int, default=4)
    parser.add_argument("--wrk-connections", type=int, default=64)
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument(
        "--wrk-runs", type=int, default=3, help="alternating bare/intake runs (median reported); 0: no wrk figure"
    )
    parser.add_argument(
        "--webhook-paths",
        type=lambda text: [part for part in text.split(",") if part.strip()],
        default=["standard", "hubspot"],
        help="signed webhook kinds measured beside POST /v1/leads (of: standard, hubspot); '' skips them",
    )
    parser.add_argument("--webhook-max-rate", type=int, default=4000, help="signed requests built per second of a run")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        out("bench/pipeline.py needs wrk: apt-get install -y wrk (Debian/Ubuntu), brew install wrk (macOS)")
        return 2

    backends = ["sqlite", "postgres"] if args.backend == "all" else [args.backend]
    skipped: list[str] = []
    if "postgres" in backends and (why := await postgres_reachable(args.postgres_url)) is not None:
        if args.backend == "postgres":
            out(f"PostgreSQL at --postgres-url is unreachable: {why}")
            return 2
        backends.remove("postgres")
        skipped.append(f"postgres skipped: {why}")
        out(f"PostgreSQL unreachable, running SQLite only ({why})")

    host = machine()
    out(f"machine: {host['nproc']} CPUs ({host['cpu']}), {host['memory_gib']} GiB, Python {host['python']}")
    started = time.monotonic()
    results = []
    with tempfile.TemporaryDirectory(prefix="leadrelay-bench-") as scratch:
        for backend in backends:
            results.append(await bench_backend(backend, args, Path(scratch)))

    out()
    out(f"LeadRelay pipeline benchmark, {host['date']}, {time.monotonic() - started:.0f} s")
    for line in table(results):
        out(line)
    for result in results:
        for note in result.notes:
            out(f"note ({result.backend}): {note}")
        if result.load_average:
            start, end = (f"{one:.1f}" for one, _five, _fifteen in result.load_average)
            out(f"note ({result.backend}): 1-minute load average {start} at start, {end} at end ({host['nproc']} CPUs)")
    for note in skipped:
        out(f"note: {note}")
    if args.json:
        document = {
            "machine": host,
            "arguments": {name: str(value) for name, value in vars(args).items() if name != "postgres_url"},
            "results": [result.__dict__ for result in results],
        }
        args.json.write_text(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        sys.exit(asyncio.run(main()))
    else:
        sys.exit(uvloop.run(main()))
