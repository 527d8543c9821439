"""What on-call sees, end to end: a real Prometheus scrapes the running stack every second and evaluates the
alerts of deploy/prometheus/alerts.yml, every query of the SLA on-call dashboard returns data, and an SLA
breach alert reaches a local Alertmanager, which pages the on-call webhook (an HTTP server in the test).

Prometheus and Alertmanager are Debian's binaries (`prometheus`, `prometheus-alertmanager`), run on the
configs `make observe` renders (leadrelay.observe); skipped when missing unless REQUIRE_PROMTOOL=1.
"""

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from leadrelay.broker import EmbeddedBroker
from leadrelay.observe import (
    ALERTMANAGER_BINARIES,
    PROMETHEUS_BINARIES,
    OncallSink,
    alertmanager_config,
    prometheus_config,
    write_config,
)
from leadrelay.testing import Stack, free_port, wait_until
from tests.e2e.conftest import StackFactory
from tests.observability.conftest import DEPLOY, require, server

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "sla-oncall.json"
# The sla-monitor on fast timings: every obligation breaches a second after it starts.
SLA_ENV = {"FIRST_RESPONSE_SECONDS": "1", "TIMER_MAX_SLEEP_SECONDS": "0.2", "SLA_GAUGE_INTERVAL_SECONDS": "0.5"}
# Quantiles of a histogram with no observation in the window are NaN: the test stack's reps have no
# notification channel, so no notification is delivered and speed-to-lead observes nothing.
NAN_ALLOWED = {"Speed to lead (p90)"}


@pytest.fixture
def prometheus_binary() -> str:
    """Path of the Prometheus server (skip, or fail with REQUIRE_PROMTOOL=1, when missing)."""
    return require(PROMETHEUS_BINARIES)


@pytest.fixture
def alertmanager_binary() -> str:
    """Path of the Alertmanager server (skip, or fail with REQUIRE_PROMTOOL=1, when missing)."""
    return require(ALERTMANAGER_BINARIES)


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every panel target, the team and source variables set to All (`.*`)."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [
        (panel["title"], target["expr"].replace("$team", ".*").replace("$source", ".*"))
        for panel in panels
        for target in panel.get("targets", [])
    ]


def variable_queries() -> dict[str, tuple[str, str]]:
    """Each dashboard variable's `label_values(metric, label)` as (metric, label)."""
    variables = json.loads(DASHBOARD.read_text())["templating"]["list"]
    found: dict[str, tuple[str, str]] = {}
    for variable in variables:
        metric, label = variable["query"]["query"].removeprefix("label_values(").removesuffix(")").split(", ")
        found[variable["name"]] = (metric, label)
    return found


@dataclass
class Observed:
    """The stack, the Prometheus scraping it, the Alertmanager it alerts, and the on-call webhook."""

    stack: Stack
    prometheus: str
    alertmanager: str
    oncall: OncallSink
    logs: dict[str, Path]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        async with httpx.AsyncClient(timeout=5.0) as client:
            answer = await client.get(f"{self.prometheus}/api/v1/query", params={"query": expr})
        answer.raise_for_status()  # 503 (plain text) until Prometheus is ready: wait_until tries again
        body = answer.json()
        assert body["status"] == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def label_values(self, metric: str, label: str) -> list[str]:
        """What Grafana's label_values(metric, label) lists."""
        async with httpx.AsyncClient(timeout=5.0) as client:
            answer = await client.get(f"{self.prometheus}/api/v1/label/{label}/values", params={"match[]": metric})
        answer.raise_for_status()
        values: list[str] = answer.json()["data"]
        return values

    def tails(self) -> str:
        """Last lines of Prometheus's and Alertmanager's logs, and the services'."""
        own = "\n".join(
            f"--- {name}\n" + "\n".join(path.read_text().splitlines()[-20:]) for name, path in self.logs.items()
        )
        return own + "\n" + self.stack.logs()


@asynccontextmanager
async def observed(
    broker: EmbeddedBroker, make_stack: StackFactory, tmp_path: Path, prometheus_binary: str, alertmanager_binary: str
) -> AsyncIterator[Observed]:
    """The stack on fast SLA timings, watched the way `make observe` watches `make run`, every interval 1 s."""
    stack = await make_stack(broker, env=SLA_ENV)
    await stack.start()
    oncall = OncallSink(free_port())
    oncall.start()
    prometheus = f"127.0.0.1:{free_port()}"
    alertmanager = f"127.0.0.1:{free_port()}"
    targets = {name: f"127.0.0.1:{service.port}" for name, service in stack.services.items()}
    prometheus_file = write_config(
        tmp_path / "observe" / "prometheus.yml",
        prometheus_config(targets=targets, alertmanager=alertmanager, scrape_interval="1s", evaluation_interval="1s"),
    )
    alertmanager_file = write_config(
        tmp_path / "observe" / "alertmanager.yml",
        alertmanager_config(oncall_url=oncall.url, group_wait="1s", group_interval="1s"),
    )
    logs = {"prometheus": tmp_path / "prometheus.log", "alertmanager": tmp_path / "alertmanager.log"}
    try:
        async with (
            server(
                [
                    alertmanager_binary,
                    f"--config.file={alertmanager_file}",
                    f"--storage.path={tmp_path / 'alertmanager-data'}",
                    f"--web.listen-address={alertmanager}",
                    "--cluster.listen-address=",
                ],
                logs["alertmanager"],
            ),
            server(
                [
                    prometheus_binary,
                    f"--config.file={prometheus_file}",
                    f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
                    f"--web.listen-address={prometheus}",
                ],
                logs["prometheus"],
            ),
        ):
            watched = Observed(stack, f"http://{prometheus}", f"http://{alertmanager}", oncall, logs)
            for url in (watched.alertmanager, watched.prometheus):
                await wait_until(partial(_ready, url), timeout=60, interval=0.2, what=f"{url} to be ready")
            await wait_until(
                lambda: _all_up(watched), timeout=60, interval=0.5, what="Prometheus scraping the four services"
            )
            yield watched
    finally:
        oncall.stop()


async def _ready(url: str) -> bool:
    async with httpx.AsyncClient(timeout=2.0) as client:
        return (await client.get(f"{url}/-/ready")).status_code == 200


async def _all_up(watched: Observed) -> bool:
    up = await watched.query('up{job="leadrelay"} == 1')
    return len(up) == 4


async def drive_leads(stack: Stack, *, count: int) -> None:
    """Leads one after another, each made an MQL (a demo request) and then worked by its owner: every other one
    only once its SLA has breached (a late response), the others at once (met)."""
    for number in range(count):
        lead_id = await stack.post_lead(email=f"lead{number}@observed.example", source="webinar")
        lead = await stack.wait_routed(lead_id)
        activities = f"/v1/leads/{lead_id}/activities"
        await stack.api.post(activities, json={"type": "demo_requested"})
        if number % 2:

            async def breached(lead_id: str = lead_id) -> bool:
                return (await stack.lead(lead_id))["sla_state"] == "breached"

            await wait_until(breached, timeout=30, what=f"lead {lead_id}'s SLA to breach")
        owner = (await stack.lead(lead_id))["owner_rep_id"] or lead["owner_rep_id"]
        await stack.api.post(activities, json={"type": "accepted", "rep_id": owner})
        await stack.api.post(activities, json={"type": "contacted", "channel": "call", "rep_id": owner})


async def wait_for_data(watched: Observed, queries: list[tuple[str, str]], *, timeout: float) -> None:
    """Wait until every query has returned at least one sample (a finite one unless NAN_ALLOWED)."""
    missing = dict(queries)

    async def all_answered() -> bool:
        for title, expr in list(missing.items()):
            samples = [float(sample["value"][1]) for sample in await watched.query(expr)]
            if samples and (title in NAN_ALLOWED or any(not math.isnan(value) for value in samples)):
                del missing[title]
        return not missing

    try:
        await wait_until(all_answered, timeout=timeout, interval=1.0, what="every panel's query to return data")
    except AssertionError as exc:
        raise AssertionError(f"panels without data: {sorted(missing)}\n{watched.tails()}") from exc


async def test_prometheus_scrapes_the_stack_and_the_pipeline_panels_have_data(
    broker: EmbeddedBroker,
    make_stack: StackFactory,
    tmp_path: Path,
    prometheus_binary: str,
    alertmanager_binary: str,
) -> None:
    async with observed(broker, make_stack, tmp_path, prometheus_binary, alertmanager_binary) as watched:
        await drive_leads(watched.stack, count=3)
        pipeline = [(title, expr) for title, expr in panel_queries() if "leadrelay_sla_" not in expr]

        await wait_for_data(watched, pipeline, timeout=60)
        metric, label = variable_queries()["source"]
        sources = await wait_until(lambda: watched.label_values(metric, label), timeout=30, what="the source values")
        up = await watched.query('up{job="leadrelay"}')

    assert len(pipeline) >= 6
    assert sources == ["webinar"]
    assert sorted(sample["metric"]["service"] for sample in up) == ["intake", "router", "scoring", "sla-monitor"]


async def test_every_panel_has_data_and_a_breach_pages_oncall(
    broker: EmbeddedBroker,
    make_stack: StackFactory,
    tmp_path: Path,
    prometheus_binary: str,
    alertmanager_binary: str,
) -> None:
    async with observed(broker, make_stack, tmp_path, prometheus_binary, alertmanager_binary) as watched:
        # Keep leads coming (every other one breaches a second after it starts) until every panel has shown data.
        driver = asyncio.create_task(drive_leads(watched.stack, count=60))
        try:
            await wait_for_data(watched, panel_queries(), timeout=120)
            metric, label = variable_queries()["team"]
            teams = await wait_until(lambda: watched.label_values(metric, label), timeout=30, what="the team values")

            def paged() -> list[dict[str, Any]]:
                return [
                    alert
                    for alert in watched.oncall.alerts()
                    if alert["labels"]["alertname"] == "LeadRelaySlaBreaches" and alert["status"] == "firing"
                ]

            async def oncall_paged() -> list[dict[str, Any]]:
                return paged()

            pages = await wait_until(oncall_paged, timeout=90, interval=0.5, what="the on-call webhook to be paged")
        finally:
            driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await driver

    assert teams
    assert pages[0]["labels"]["category"] == "sla"
    assert pages[0]["labels"]["team"] in teams
    assert pages[0]["annotations"]["runbook_url"] == "docs/runbooks.md#leadrelayslabreaches"
    assert all(notification["receiver"] == "oncall" for notification in watched.oncall.notifications)
