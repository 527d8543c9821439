"""Intake with several worker processes (INTAKE_WORKERS): one relay, one key, no orphans."""

import asyncio
import os
import signal
from collections import Counter
from pathlib import Path

from leadrelay.broker import EmbeddedBroker
from leadrelay.events import Topic
from leadrelay.testing import ServiceProcess, count_rows, read_to_end, wait_until
from tests.e2e.conftest import StackFactory


def _workers_of(pid: int) -> list[int]:
    """Worker processes uvicorn spawned for a parent (not multiprocessing's resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # not a process, or gone
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def _alive(pids: list[int]) -> list[int]:
    # A zombie has exited; only its parent's wait is missing.
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.append(pid)
    return alive


async def _two_workers(intake: ServiceProcess) -> list[int]:
    assert intake.pid is not None

    async def started() -> list[int] | None:
        workers = _workers_of(intake.pid)  # type: ignore[arg-type]
        logged = intake.log_path.read_text().count('"message": "service started"')
        return workers if len(workers) == 2 and logged == 2 else None

    return await wait_until(started, timeout=60, what="two intake workers to start")


async def test_two_workers_accept_leads_and_publish_each_lead_received_once(
    broker: EmbeddedBroker, make_stack: StackFactory, backend: str
) -> None:
    stack = await make_stack(broker, backend=backend, env={"INTAKE_WORKERS": "2"})
    await stack.start("intake")
    intake = stack["intake"]
    workers = await _two_workers(intake)

    lead_ids = await asyncio.gather(*(stack.post_lead(email=f"lead{i}@analytical.example") for i in range(40)))

    async def outbox_drained() -> bool:
        return await count_rows(stack.database_urls["intake"], "outbox") == 0

    await wait_until(outbox_drained, timeout=30, what="intake's outbox to drain")
    records = await read_to_end(broker.bootstrap_servers, Topic.LEADS_RECEIVED)
    assert all(dict(record.headers)["ce_type"] == b"lead.received" for record in records)
    published = Counter(record.key.decode() for record in records if record.key is not None)
    assert published == Counter(lead_ids), "every lead gets exactly one lead.received"
    assert await count_rows(stack.database_urls["intake"], "api_key") == 3  # development and two demo keys, once each

    assert await intake.stop() == 0
    assert _alive(workers) == [], "SIGTERM left workers behind"


async def test_workers_stop_when_their_supervisor_is_killed(broker: EmbeddedBroker, make_stack: StackFactory) -> None:
    stack = await make_stack(broker, env={"INTAKE_WORKERS": "2"})
    await stack.start("intake")
    intake = stack["intake"]
    workers = await _two_workers(intake)
    assert intake.pid is not None
    os.kill(intake.pid, signal.SIGKILL)  # no shutdown code runs in the supervisor

    async def workers_gone() -> bool:
        return _alive(workers) == []

    await wait_until(workers_gone, timeout=30, what="the orphaned workers to stop")
    assert intake.log_path.read_text().count('"message": "supervisor process gone, stopping"') == 2
    assert intake.log_path.read_text().count('"message": "service stopped"') == 2
    await intake.stop()
