"""`make run`'s stack (devstack + honcho + Procfile): starts, seeds the demo, routes by the demo rules, stops
cleanly, keeps data."""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx

from leadrelay.apikeys import DEFAULT_DEMO_MARKETING_KEY, DEFAULT_DEMO_SALES_KEY
from leadrelay.broker import is_listening
from leadrelay.cli.demo import OPENING, Demo
from leadrelay.cli.http import ServiceClient
from leadrelay.demo import DEMO_RECEIVER_SECRET
from leadrelay.testing import DEV_API_KEY, FAST_SERVICE_ENV, free_port, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("intake", "scoring", "router", "sla-monitor")


def _processes_with(marker: str) -> list[int]:
    """PIDs whose environment carries the marker: everything the stack started, however deep."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue  # gone, or not ours to read
    return found


class DevStack:
    """`python -m leadrelay.devstack` (what `make run` runs) on free ports and scratch databases."""

    def __init__(self, tmp_path: Path) -> None:
        self.marker = f"LEADRELAY_TEST_MARKER={uuid4().hex}"
        self.ports = {name: free_port() for name in SERVICES}
        self.broker_port = free_port()
        self.receiver_port = free_port()
        env = {key: value for key, value in os.environ.items() if key != "KAFKA_BOOTSTRAP_SERVERS"}
        env.update(FAST_SERVICE_ENV)
        env.update({"EMBEDDED_BROKER_PORT": str(self.broker_port), "LEADRELAY_DEV_API_KEY": DEV_API_KEY})
        env["LEADRELAY_RECEIVER_PORT"] = str(self.receiver_port)
        env.pop("LEADRELAY_RECEIVER_SECRET", None)
        env["INTAKE_WORKERS"] = "2"  # Ctrl-C must stop every worker process too
        for name in SERVICES:
            prefix = name.upper().replace("-", "_")
            env[f"{prefix}_PORT"] = str(self.ports[name])
            env[f"{prefix}_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / name}.db"
        key, value = self.marker.split("=")
        env[key] = value
        self.env = env
        self.log_path = tmp_path / "devstack.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "leadrelay.devstack"],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, like a terminal's foreground job
            )

    def ctrl_c(self) -> int:
        """What Ctrl-C does in a terminal: SIGINT to the whole foreground process group."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGINT)
        code = self.process.wait(60)
        self.process = None
        return code

    def force_stop(self) -> None:
        for pid in _processes_with(self.marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def _get_lead(client: httpx.AsyncClient, lead_id: str) -> dict[str, object] | None:
    response = await client.get(f"/v1/leads/{lead_id}")
    return response.json() if response.status_code == 200 else None


async def _seeded_routing(client: httpx.AsyncClient, router_url: str) -> dict[str, Any] | None:
    answer = await client.get(f"{router_url}/v1/routing/versions")
    if answer.status_code != 200:  # router may still be learning the test's own key
        return None
    versions: list[dict[str, Any]] = answer.json()["versions"]
    return next((version for version in versions if version["status"] == "active"), None)


async def _demo_opening(client: httpx.AsyncClient, intake_url: str, router_url: str) -> None:
    """`leadrelay demo`'s opening (the accounts, then a lead per demo rule): each lead routed by its rule."""
    with ServiceClient(intake_url, DEV_API_KEY) as intake:
        run = Demo(intake, intake_url, seed=7)
        for _ in range(1 + len(OPENING)):
            await asyncio.to_thread(run.step)
    assert run.tally.answers == {"accounts 200": 1, "rest_lead 202": len(OPENING)}
    *by_rule, _enterprise = run.tally.lead_ids

    async def decided(lead_id: str) -> dict[str, Any] | None:
        answer = await client.get(f"{router_url}/v1/assignments/{lead_id}")
        return answer.json()["current"] if answer.status_code == 200 else None

    decisions = []
    for lead_id in by_rule:
        decisions.append(await wait_until(partial(decided, lead_id), timeout=60, what="a demo lead routed"))
    assert [(decision["rule_path"][-1], decision["outcome"]) for decision in decisions] == [
        ("trade_show_follow_up", "queued"),
        ("nurture_weak_fit", "nurtured"),
        ("us_referrals", "assigned"),
        ("emea", "assigned"),  # team-na works around the clock, and Alan is on both teams
        ("everyone_else", "assigned"),
    ]
    assert decisions[0]["team_id"] == "team-emea"
    assert decisions[2]["rep_id"] == "rep-grace"
    assert decisions[3]["rep_id"] in ("rep-alan", "rep-ada")
    assert all(decision["routing_version"] == "1" for decision in decisions)

    async def owner_routed() -> dict[str, Any] | None:
        # The accounts reach scoring on their own topic: once they have, a Mainframe Bank lead goes to its owner.
        with ServiceClient(intake_url, DEV_API_KEY) as intake:
            run.intake = intake
            run.opening = [OPENING[-1]]
            await asyncio.to_thread(run.step)
        decision = await wait_until(lambda: decided(run.tally.lead_ids[-1]), timeout=30, what="a Mainframe Bank lead")
        return decision if decision["rule_path"][-1] == "enterprise_accounts" else None

    owned = await wait_until(owner_routed, timeout=60, interval=1, what="a lead routed to its account owner")
    assert (owned["outcome"], owned["rep_id"]) == ("assigned", "rep-grace")


async def test_make_run_stack_routes_stops_cleanly_and_keeps_leads(tmp_path: Path) -> None:
    stack = DevStack(tmp_path)
    intake_url = f"http://127.0.0.1:{stack.ports['intake']}"
    router_url = f"http://127.0.0.1:{stack.ports['router']}"
    headers = {"Authorization": f"Bearer {DEV_API_KEY}"}
    stack.start()
    try:
        async with httpx.AsyncClient(base_url=intake_url, headers=headers, timeout=5) as client:

            async def healthy() -> bool:
                return (await client.get("/healthz")).status_code == 200

            await wait_until(healthy, timeout=60, what="intake under make run")
            banner = stack.log_path.read_text()
            # The test sets its own dev key: a key the user chose is a secret, named but never shown.
            assert "API key      $LEADRELAY_DEV_API_KEY" in banner
            assert DEV_API_KEY not in banner
            assert f"http://127.0.0.1:{stack.ports['sla-monitor']}" in banner
            assert DEFAULT_DEMO_MARKETING_KEY in banner
            assert DEFAULT_DEMO_SALES_KEY in banner
            assert f"receiver     http://127.0.0.1:{stack.receiver_port}" in banner

            async def demo_sales_key_on_sla_monitor() -> bool:
                answer = await client.get(
                    f"http://127.0.0.1:{stack.ports['sla-monitor']}/v1/whoami",
                    headers={"Authorization": f"Bearer {DEFAULT_DEMO_SALES_KEY}"},
                )
                return answer.status_code == 200 and answer.json()["team"] == "sales"

            await wait_until(demo_sales_key_on_sla_monitor, timeout=60, what="the demo sales key on sla-monitor")

            response = await client.post("/v1/leads", json={"email": "ada@analytical.example", "company": "AE"})
            assert response.status_code == 202
            lead_id = response.json()["id"]

            # The demo rules may be active by now or not yet: the lead goes to a rep, a queue or nurture.
            async def routed() -> dict[str, object] | None:
                lead = await _get_lead(client, lead_id)
                return lead if lead and lead["routing_outcome"] else None

            first = await wait_until(routed, timeout=60, what="the lead to be routed under make run")
            first_decision = (first["routing_outcome"], first["owner_rep_id"], first["queue_team_id"])

            icp_versions = f"http://127.0.0.1:{stack.ports['scoring']}/v1/icp/versions"

            async def seeded_icp() -> list[dict[str, Any]] | None:
                answer = await client.get(icp_versions)
                if answer.status_code != 200:  # scoring may still be learning the test's own key
                    return None
                versions: list[dict[str, Any]] = answer.json()["versions"]
                return versions if any(version["status"] == "active" for version in versions) else None

            [icp] = await wait_until(seeded_icp, timeout=60, what="the demo ICP to be seeded and active")
            assert icp["approved_teams"] == ["marketing", "sales"]
            assert [approval["key_id"] for approval in icp["approvals"]] == ["key_demo_marketing", "key_demo_sales"]
            assert icp["author"]["team"] == "ops"
            assert "icp seeded   v1 active: icp.yaml approved by marketing, sales" in stack.log_path.read_text()

            routing = await wait_until(
                lambda: _seeded_routing(client, router_url), timeout=60, what="the demo routing rules to be active"
            )
            assert (routing["version"], routing["approved_teams"], routing["author"]["team"]) == (1, ["sales"], "ops")
            teams = (await client.get(f"{router_url}/v1/teams")).json()["teams"]
            assert {team["id"] for team in teams} == {"default", "team-na", "team-emea"}
            reps = {rep["id"]: rep for rep in (await client.get(f"{router_url}/v1/reps")).json()["reps"]}
            assert set(reps) == {"rep-default", "rep-grace", "rep-alan", "rep-ada"}
            receiver = f"http://127.0.0.1:{stack.receiver_port}"
            assert reps["rep-default"]["channels"] == [
                {
                    "kind": "webhook",
                    "url": f"{receiver}/reps/rep-default",
                    "secret_last4": DEMO_RECEIVER_SECRET[-4:],
                    "disabled": False,
                }
            ]
            assert (await client.post(f"{receiver}/reps/rep-default", content=b"{}")).status_code == 401  # unsigned

            sla_versions = f"http://127.0.0.1:{stack.ports['sla-monitor']}/v1/sla/versions"

            async def seeded_sla() -> list[dict[str, Any]] | None:
                answer = await client.get(sla_versions)
                if answer.status_code != 200:
                    return None
                versions: list[dict[str, Any]] = answer.json()["versions"]
                return versions if any(version["status"] == "active" for version in versions) else None

            [sla] = await wait_until(seeded_sla, timeout=60, what="the demo SLA to be seeded and active")
            assert (sla["approved_teams"], sla["author"]["team"]) == (["marketing", "sales"], "ops")

            await _demo_opening(client, intake_url, router_url)

            assert stack.ctrl_c() in (0, 130)
            assert _processes_with(stack.marker) == [], "Ctrl-C left processes behind"
            assert not is_listening("127.0.0.1", stack.broker_port)
            log = stack.log_path.read_text()
            for name in SERVICES:
                stopped = f'"service": "{name}", "logger": "leadrelay.service", "message": "service stopped"'
                assert log.count(stopped) == (2 if name == "intake" else 1), name

            stack.start()  # the second `make run`
            await wait_until(healthy, timeout=60, what="intake after a restart")
            kept = await _get_lead(client, lead_id)
            assert kept is not None
            assert (kept["routing_outcome"], kept["owner_rep_id"], kept["queue_team_id"]) == first_decision

            async def seeding_looked_again() -> bool:
                log = stack.log_path.read_text()
                return (
                    "icp seeded   v1 already active (left alone)" in log and "routing seeded v1 already active" in log
                )

            await wait_until(seeding_looked_again, timeout=60, what="seeding to find the ICP already active")
            assert [version["version"] for version in (await client.get(icp_versions)).json()["versions"]] == [1]
            assert stack.ctrl_c() in (0, 130)
    finally:
        stack.force_stop()
