"""Test helpers: real service processes, waiting on conditions with deadlines, migrated databases,
a Kafka helper and a consumer runner for the shared library's tests."""

import asyncio
import importlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.structs import RecordMetadata
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event, func, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from leadrelay.apikeys import ApiKey, Scope, Team, hash_key
from leadrelay.consumer import EventConsumer, Handlers
from leadrelay.db import SessionFactory, create_engine, create_session_factory, run_migrations
from leadrelay.kafka import KafkaBus, read_available
from leadrelay.metrics import ServiceMetrics
from leadrelay.outbox import OutboxMessage
from leadrelay.settings import ServiceSettings

T = TypeVar("T")

# Fast timings for tests. The embedded broker answers a group join after half the session timeout
# rounded up to whole seconds (measured: 2 s at 3000 ms, 1 s at 2000 ms and at 1000 ms); 2000 ms
# gets the 1 s join while a member still has four heartbeats of slack on a busy machine.
FAST_SERVICE_ENV = {
    "ENVIRONMENT": "test",
    "KAFKA_SESSION_TIMEOUT_MS": "2000",
    "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
    "OUTBOX_POLL_INTERVAL_SECONDS": "0.2",
    "CONSUMER_RETRY_BACKOFF_SECONDS": "0.05",
    "KAFKA_CONNECT_BACKOFF_MAX_SECONDS": "0.5",
    "LOG_LEVEL": "INFO",
    "INTAKE_WORKERS": "1",  # one process, whatever the cores; tests of several workers ask for them
}


# The same, for a service app built in the test's own process (its settings as keyword arguments):
# a consumer joins the embedded broker's group after that delay, and an app stopped before it
# joined waits that long.
FAST_SETTINGS: dict[str, Any] = {"kafka_session_timeout_ms": 2000, "kafka_heartbeat_interval_ms": 500}


LOWEST_PORT = 10_000
"""Where `free_port` starts handing out ports: above the well-known and commonly configured ones."""


def ephemeral_ports_start() -> int:
    """The first port the kernel hands out for the local end of outgoing connections (Linux; 32768 elsewhere)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


class PortPicker:
    """Hands out ports from `[low, high)` in turn, each one checked free, starting at a random one.

    Ports below the kernel's ephemeral range are never taken by an outgoing connection, so a port
    handed out stays free until the process it is meant for binds it. A port the kernel picks
    itself (binding to port 0) comes from the ephemeral range, where any of the connections a test
    opens to the broker or the database can take it first: a service then fails with "address
    already in use". In turn, not at random, so one test run never gets the same port twice.
    """

    def __init__(self, low: int, high: int) -> None:
        self._ports = range(low, high)
        self._next = random.randrange(len(self._ports)) if self._ports else 0

    @property
    def ports(self) -> range:
        """The ports this picker hands out."""
        return self._ports

    def __call__(self) -> int:
        """A port nothing listens on right now (the kernel's choice when the range is empty or full)."""
        for _ in range(min(len(self._ports), 1_000)):
            port = self._ports[self._next]
            self._next = (self._next + 1) % len(self._ports)
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            chosen: int = sock.getsockname()[1]
            return chosen


def ports_for_this_process() -> PortPicker:
    """This process's picker: test workers (pytest-xdist) split the range, so no two hand out the same port."""
    low, high = LOWEST_PORT, max(LOWEST_PORT, ephemeral_ports_start())
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0) % workers
    share = (high - low) // workers
    return PortPicker(low + worker * share, low + (worker + 1) * share)


free_port = ports_for_this_process()
"""A TCP port nothing listens on right now, below the kernel's ephemeral range (see `PortPicker`)."""


async def wait_until(
    probe: Callable[[], Awaitable[T | None]], *, timeout: float, interval: float = 0.05, what: str = "condition"
) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = await probe()
            if result:
                return result
        except (httpx.HTTPError, OSError) as exc:
            last_error = exc
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}"
                + (f" (last error: {last_error!r})" if last_error else "")
            )
        await asyncio.sleep(interval)


class ServiceProcess:
    """One LeadRelay service run as `python -m <module>`, exactly as in production."""

    def __init__(self, module: str, *, port: int, env: dict[str, str], workdir: Path, name: str | None = None) -> None:
        self.module, self.port, self.workdir = module, port, workdir
        self.env = {**os.environ, **FAST_SERVICE_ENV, **env, "PORT": str(port), "HOST": "127.0.0.1"}
        self.log_path = workdir / f"{name or module}.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the service."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The process id while started."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the process (logs go to <workdir>/<module>.log)."""
        self._log = open(self.log_path, "ab")  # noqa: SIM115  (open while the process runs)
        self._process = subprocess.Popen(
            [sys.executable, "-m", self.module],
            cwd=self.workdir,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    async def wait_healthy(self, timeout: float = 30.0) -> None:
        """Wait until /healthz answers (migrations done, lifespan started)."""

        async def healthy() -> bool:
            if not self.running:
                raise AssertionError(f"{self.module} exited; log:\n{self.log_tail()}")
            async with httpx.AsyncClient(timeout=1.0) as client:
                return (await client.get(f"{self.url}/healthz")).status_code == 200

        await wait_until(healthy, timeout=timeout, what=f"{self.module} to become healthy")

    async def stop(self, timeout: float = 20.0) -> int | None:
        """Graceful stop with SIGTERM, as a process manager does."""
        return await self._signal(signal.SIGTERM, timeout)

    async def kill(self) -> int | None:
        """SIGKILL: no shutdown code runs."""
        return await self._signal(signal.SIGKILL, 10.0)

    async def _signal(self, sig: int, timeout: float) -> int | None:
        process, self._process = self._process, None
        code = None
        if process is not None:
            if process.poll() is None:
                process.send_signal(sig)
            try:
                code = await asyncio.to_thread(process.wait, timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                code = await asyncio.to_thread(process.wait)
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def log_tail(self, lines: int = 40) -> str:
        """Last lines of the process's log."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class ReceiverProcess:
    """`leadrelay receiver` (a rep's endpoint as `make run` has it) on a free port, its output in a file."""

    def __init__(self, workdir: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out = workdir / f"receiver-{self.port}.out"
        env = {key: value for key, value in os.environ.items() if key != "LEADRELAY_RECEIVER_SECRET"}
        with open(self.out, "wb") as out:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).parent / "leadrelay"), "receiver", "--port", str(self.port), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def lines(self) -> list[str]:
        """What it printed so far."""
        return self.out.read_text().splitlines()

    async def wait_listening(self) -> None:
        """Wait until it answers (an unsigned POST is refused with 401)."""

        async def answers() -> bool:
            try:
                async with httpx.AsyncClient(timeout=3) as client:
                    return (await client.post(f"{self.url}/probe", content=b"{}")).status_code == 401
            except httpx.TransportError:
                return False

        await wait_until(answers, timeout=20, what="the receiver to listen")

    def stop(self) -> int:
        """Ctrl-C, as a user stops it; its exit code."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(10)

    def kill(self) -> None:
        """Make sure it is gone."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


async def count_rows(database_url: str, table: str) -> int:
    """Rows in a table of a service's database."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            return int((await connection.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())
    finally:
        await engine.dispose()


SERVICE_MODULES = {"intake": "intake", "scoring": "scoring", "router": "router", "sla-monitor": "sla_monitor"}
DEV_API_KEY = "lr_test_key_0123456789abcdef"


class Stack:
    """The four services as real processes on one broker, each with its own database."""

    def __init__(
        self, *, workdir: Path, bootstrap_servers: str, database_urls: dict[str, str], env: dict[str, str] | None = None
    ) -> None:
        self.database_urls = database_urls
        self.services = {
            name: ServiceProcess(
                module,
                port=free_port(),
                workdir=workdir,
                env={
                    "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
                    "DATABASE_URL": database_urls[name],
                    "LEADRELAY_DEV_API_KEY": DEV_API_KEY,
                    **(env or {}),
                },
            )
            for name, module in SERVICE_MODULES.items()
        }
        self.api = httpx.AsyncClient(
            base_url=self.services["intake"].url, headers={"Authorization": f"Bearer {DEV_API_KEY}"}, timeout=10.0
        )

    def __getitem__(self, name: str) -> ServiceProcess:
        return self.services[name]

    async def start(self, *names: str) -> None:
        """Start services (all by default) and wait until each is healthy."""
        chosen = names or tuple(self.services)
        for name in chosen:
            self.services[name].start()
        await asyncio.gather(*(self.services[name].wait_healthy() for name in chosen))
        if self.services["intake"].running:
            await asyncio.gather(*(self.wait_key_known(name) for name in chosen))

    async def wait_key_known(self, name: str, key: str = DEV_API_KEY, timeout: float = 30.0) -> None:
        """Wait until a service accepts a key (intake announces keys; the others store them)."""
        service = self.services[name]

        async def accepted() -> bool:
            async with httpx.AsyncClient(timeout=3.0) as client:
                answer = await client.get(f"{service.url}/v1/whoami", headers={"Authorization": f"Bearer {key}"})
            return answer.status_code == 200

        await wait_until(accepted, timeout=timeout, what=f"{name} to accept the key")

    async def stop(self, *names: str) -> None:
        """Stop services gracefully (all by default), all at once."""
        await asyncio.gather(*(self.services[name].stop() for name in names or tuple(self.services)))

    async def close(self) -> None:
        """Stop everything and close the client."""
        await self.stop()
        await self.api.aclose()

    async def post_lead(self, **fields: object) -> str:
        """POST a lead; returns its id."""
        body = {"email": "ada@analytical.example", "company": "Analytical Engines", "job_title": "CTO", **fields}
        response = await self.api.post("/v1/leads", json=body)
        assert response.status_code == 202, response.text
        lead_id: str = response.json()["id"]
        return lead_id

    async def lead(self, lead_id: str) -> dict[str, object]:
        """GET a lead's read model."""
        response = await self.api.get(f"/v1/leads/{lead_id}")
        assert response.status_code == 200, response.text
        body: dict[str, object] = response.json()
        return body

    async def wait_routed(self, lead_id: str, timeout: float = 30.0) -> dict[str, object]:
        """Wait until a lead has an owner and an SLA deadline in intake's read model."""

        async def routed() -> dict[str, object] | None:
            lead = await self.lead(lead_id)
            return lead if lead["owner_rep_id"] and lead["sla_due_at"] else None

        return await wait_until(routed, timeout=timeout, what=f"lead {lead_id} to be assigned with a deadline")

    def logs(self) -> str:
        """Tails of every service log, for assertion messages."""
        return "\n".join(f"--- {name}\n{process.log_tail()}" for name, process in self.services.items())


async def read_topic(
    bootstrap_servers: str, topic: str, *, min_count: int, timeout: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read a topic from the beginning (no consumer group) until at least `min_count` records arrived."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap_servers, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + timeout
        while len(records) < min_count:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s: {len(records)} of {min_count} records on {topic}")
            batch = await consumer.getmany(timeout_ms=200)
            for partition_records in batch.values():
                records.extend(partition_records)
    finally:
        await consumer.stop()
    return records


async def read_to_end(bootstrap_servers: str, topic: str, timeout: float = 30.0) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record currently in a topic (up to the end offsets taken at the start)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        return await read_available(consumer, topic, timeout=timeout)
    finally:
        await consumer.stop()


async def produce(bootstrap_servers: str, topic: str, records: list[tuple[str, bytes]]) -> None:
    """Produce (key, value) records in order and wait for the acknowledgements."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value=value, key=key.encode())
    finally:
        await producer.stop()


async def metric_value(url: str, name: str, labels: dict[str, str] | None = None) -> float:
    """Sum of a Prometheus metric's samples matching the labels, read from a service's /metrics."""
    async with httpx.AsyncClient(timeout=5.0) as client:
        body = (await client.get(f"{url}/metrics")).text
    total = 0.0
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                total += sample.value
    return total


def migrations_of(package: str) -> Path:
    """The Alembic migrations folder of a service package (`"router"`, `"intake"`, ...)."""
    module = importlib.import_module(package)
    assert module.__file__ is not None
    return Path(module.__file__).resolve().parent.parent / "migrations"


PARTITIONS = 3


@dataclass
class Storage:
    """A migrated database: its URL, engine and session factory."""

    url: str
    engine: AsyncEngine
    sessions: SessionFactory

    async def outbox_event_ids(self) -> list[str]:
        """Event ids of the outbox rows, in id order."""
        async with self.sessions() as session:
            return list((await session.exec(select(OutboxMessage.event_id).order_by(OutboxMessage.id))).all())  # type: ignore[arg-type]

    async def outbox_count(self) -> int:
        """Rows in the outbox table."""
        async with self.sessions() as session:
            count: int = (await session.exec(select(func.count()).select_from(OutboxMessage))).one()
            return count


@contextmanager
def recorded_statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """Every SQL statement `engine` sends while the block runs, in order (a multi-row INSERT is one)."""
    statements: list[str] = []

    def record(_connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


@asynccontextmanager
async def migrated(url: str, migrations: Path) -> AsyncIterator[Storage]:
    """A database at the head of a service's real migrations; the engine is disposed afterwards."""
    engine = create_engine(url)
    try:
        await run_migrations(engine, migrations)
        yield Storage(url, engine, create_session_factory(engine))
    finally:
        await engine.dispose()


def metric(metrics: ServiceMetrics, name: str, **labels: str) -> float:
    """Current value of one sample (0 when it was never touched)."""
    return metrics.registry.get_sample_value(name, labels) or 0.0


class Kafka:
    """Talks to the test's embedded broker: topics, producing, reading, counting."""

    def __init__(self, bootstrap_servers: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self._topics_ready = False

    def settings(self, **overrides: Any) -> ServiceSettings:
        """Fast consumer settings on this broker (explicit values, so the environment cannot leak in)."""
        values: dict[str, Any] = {
            "kafka_bootstrap_servers": self.bootstrap_servers,
            "kafka_session_timeout_ms": 3000,
            "kafka_heartbeat_interval_ms": 500,
            "kafka_topic_partitions": PARTITIONS,
            "kafka_idempotence": False,
            "consumer_retry_backoff_seconds": 0.01,
            "consumer_max_retries": 3,
            "consumer_batch_size": 200,
            "consumer_linger_ms": 0,
            "service_name": "test",
            **overrides,
        }
        return ServiceSettings(_env_file=None, **values)

    async def ensure_topics(self) -> None:
        """Create every LeadRelay topic (and its DLQ) with PARTITIONS partitions."""
        if not self._topics_ready:
            await KafkaBus(self.settings(), ServiceMetrics(CollectorRegistry())).ensure_topics()
            self._topics_ready = True

    async def produce(
        self, topic: str, *messages: tuple[str | None, bytes] | tuple[str | None, bytes, dict[str, str]]
    ) -> list[RecordMetadata]:
        """Produce (key, value[, headers]) messages in order; returns their metadata."""
        await self.ensure_topics()
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers, acks="all")
        await producer.start()
        try:
            sent = []
            for message in messages:
                key, value = message[0], message[1]
                headers = message[2] if len(message) == 3 else {}
                sent.append(
                    await producer.send_and_wait(
                        topic,
                        value=value,
                        key=key.encode() if key is not None else None,
                        headers=[(name, header.encode()) for name, header in headers.items()],
                    )
                )
            return sent
        finally:
            await producer.stop()

    async def prime_group(self, group: str, topic: str) -> None:
        """Make the group's real members join in about 1 s and leave it cleanly when they stop.

        On the embedded broker (Tansu) a group's first member gets generation 0, and aiokafka sends
        LeaveGroup only for generation > 0: without this, a consumer stopped and restarted in the same
        group waits out the first member's session timeout (about 7 s with a 3 s session). Tansu also
        derives the group's join delay from its first member's session timeout. So a short-lived
        member joins first and is left to expire quickly; real members then get generation >= 1.
        """
        primer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=self.bootstrap_servers,
            group_id=group,
            session_timeout_ms=1000,
            heartbeat_interval_ms=300,
            enable_auto_commit=False,
        )
        await primer.start()
        try:
            async with asyncio.timeout(15):
                while not primer.assignment():
                    await primer.getmany(timeout_ms=50)
        finally:
            await primer.stop()

    async def read(self, topic: str, count: int, timeout: float = 15.0) -> list[ConsumerRecord[bytes, bytes]]:
        """At least `count` records of a topic, read from the beginning."""
        return await read_topic(self.bootstrap_servers, topic, min_count=count, timeout=timeout)

    async def size(self, topic: str, timeout: float = 15.0) -> int:
        """Records in a topic, counted by reading it to the high watermark of a fetch.

        Not ListOffsets (end_offsets): the embedded broker answers it with the last batch's base
        offset + 1, which undercounts whenever the last batch held more than one record.
        """
        await self.ensure_topics()
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, group_id=None, enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            count = 0
            async with asyncio.timeout(timeout):
                while True:
                    batch = await consumer.getmany(*partitions, timeout_ms=100)
                    count += sum(len(records) for records in batch.values())
                    if await self._at_highwater(consumer, partitions):
                        return count
        finally:
            await consumer.stop()

    @staticmethod
    async def _at_highwater(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> bool:
        for tp in partitions:
            highwater = consumer.highwater(tp)  # known once a fetch for the partition has answered
            if highwater is None or await consumer.position(tp) < highwater:
                return False
        return True


@dataclass
class RunningConsumer:
    """An EventConsumer running in a task, with its own metrics registry and bus."""

    consumer: EventConsumer
    metrics: ServiceMetrics
    bus: KafkaBus
    task: asyncio.Task[None]
    stopped: bool = field(default=False)

    def value(self, name: str, **labels: str) -> float:
        """A sample of this consumer's metrics."""
        return metric(self.metrics, name, **labels)

    async def stop(self, timeout: float = 20.0) -> None:
        """Ask the loop to stop, wait for it (it commits and leaves the group), close the bus."""
        if self.stopped:
            return
        self.stopped = True
        self.consumer.stop()
        try:
            await asyncio.wait_for(self.task, timeout)
        finally:
            await self.bus.close()


class ConsumerRunner:
    """Starts EventConsumers on the test's broker; whatever is still running is stopped at teardown."""

    def __init__(self, kafka: Kafka) -> None:
        self.kafka = kafka
        self.running: list[RunningConsumer] = []
        self._primed: set[str] = set()

    async def start(self, storage: Storage, handlers: Handlers, **overrides: Any) -> RunningConsumer:
        """Run a consumer of `handlers` against `storage` (topics are created first)."""
        await self.kafka.ensure_topics()
        settings = self.kafka.settings(**overrides)
        if settings.consumer_group not in self._primed:
            topic = handlers.topics[0]
            await self.kafka.prime_group(settings.consumer_group, topic)
            self._primed.add(settings.consumer_group)
        metrics = ServiceMetrics(CollectorRegistry())
        bus = KafkaBus(settings, metrics)
        consumer = EventConsumer(
            settings=settings, bus=bus, sessions=storage.sessions, handlers=handlers, metrics=metrics
        )
        running = RunningConsumer(consumer, metrics, bus, asyncio.create_task(consumer.run()))
        self.running.append(running)
        return running

    async def stop_all(self) -> None:
        """Stop every consumer still running."""
        for running in self.running:
            await running.stop()


def stored_key(key_id: str, secret: str, *, scopes: list[Scope], team: Team = Team.OPS) -> ApiKey:
    """An API key row to add to a test's database, its secret stored hashed as the registry does."""
    return ApiKey(id=key_id, name=key_id.removeprefix("key_"), team=team, scopes=scopes, key_hash=hash_key(secret))
