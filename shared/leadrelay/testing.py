"""Test helpers: real service processes, waiting on conditions with deadlines, scratch databases."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from leadrelay.db import create_engine
from leadrelay.kafka import read_available

T = TypeVar("T")

# Fast timings for tests; the embedded broker answers a group join after about half the session timeout.
FAST_SERVICE_ENV = {
    "ENVIRONMENT": "test",
    "KAFKA_SESSION_TIMEOUT_MS": "3000",
    "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
    "OUTBOX_POLL_INTERVAL_SECONDS": "0.2",
    "CONSUMER_RETRY_BACKOFF_SECONDS": "0.05",
    "KAFKA_CONNECT_BACKOFF_MAX_SECONDS": "0.5",
    "LOG_LEVEL": "INFO",
    "INTAKE_WORKERS": "1",  # one process, whatever the cores; tests of several workers ask for them
}


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
