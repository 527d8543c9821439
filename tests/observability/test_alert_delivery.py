"""The alerting chain with the real binaries: Prometheus evaluates deploy/prometheus/alerts.yml on scraped
metrics, Alertmanager routes with deploy/alertmanager/alertmanager.yml, and SLA alerts, only they, reach
the on-call webhook. The metrics come from a stand-in exporter, so this runs without the stack; the
same chain over the live stack is tests/e2e/test_observability.py."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from leadrelay.observe import OncallSink, alertmanager_config, prometheus_config, write_config
from leadrelay.testing import free_port, wait_until
from tests.observability.conftest import server


class BreachingExporter:
    """Serves sla-monitor-like metrics: one more breach for team-na at every scrape."""

    def __init__(self) -> None:
        self.scrapes = 0
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                exporter.scrapes += 1
                body = (
                    "# TYPE leadrelay_sla_breaches_total counter\n"
                    'leadrelay_sla_breaches_total{team="team-na",obligation="first_response",grade="A1"} '
                    f"{exporter.scrapes}\n"
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


async def test_a_breach_rate_alert_pages_oncall_and_a_pipeline_alert_does_not(
    prometheus_binary: str, alertmanager_binary: str, tmp_path: Path
) -> None:
    exporter = BreachingExporter()
    oncall = OncallSink(free_port())
    oncall.start()
    prometheus, alertmanager = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    targets = {"intake": exporter.address, "scoring": exporter.address, "router": exporter.address}
    targets["sla-monitor"] = exporter.address
    prometheus_file = write_config(
        tmp_path / "prometheus.yml",
        prometheus_config(targets=targets, alertmanager=alertmanager, scrape_interval="1s", evaluation_interval="1s"),
    )
    alertmanager_file = write_config(
        tmp_path / "alertmanager.yml", alertmanager_config(oncall_url=oncall.url, group_wait="1s", group_interval="1s")
    )
    try:
        async with (
            server(
                [
                    alertmanager_binary,
                    f"--config.file={alertmanager_file}",
                    f"--storage.path={tmp_path / 'am'}",
                    f"--web.listen-address={alertmanager}",
                    "--cluster.listen-address=",
                ],
                tmp_path / "alertmanager.log",
            ),
            server(
                [
                    prometheus_binary,
                    f"--config.file={prometheus_file}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address={prometheus}",
                ],
                tmp_path / "prometheus.log",
            ),
            httpx.AsyncClient(timeout=3.0) as client,
        ):
            # A pipeline alert posted straight to Alertmanager, as Prometheus would: the default receiver's.
            async def posted() -> bool:
                alert = {"labels": {"alertname": "LeadRelayServiceDown", "category": "pipeline", "service": "router"}}
                return (await client.post(f"http://{alertmanager}/api/v2/alerts", json=[alert])).status_code == 200

            await wait_until(posted, timeout=60, what="Alertmanager to take an alert")

            async def paged() -> list[dict[str, Any]]:
                return [alert for alert in oncall.alerts() if alert["labels"]["alertname"] == "LeadRelaySlaBreaches"]

            pages = await wait_until(paged, timeout=90, interval=0.2, what="the breach alert to page on-call")
            groups = (await client.get(f"http://{alertmanager}/api/v2/alerts/groups")).json()
    finally:
        oncall.stop()
        exporter.stop()

    assert pages[0]["status"] == "firing"
    assert pages[0]["labels"] == {
        "alertname": "LeadRelaySlaBreaches",
        "category": "sla",
        "severity": "page",
        "team": "team-na",
    }
    assert pages[0]["annotations"]["runbook_url"] == "docs/runbooks.md#leadrelayslabreaches"
    assert {notification["receiver"] for notification in oncall.notifications} == {"oncall"}
    # The pipeline alert's group was flushed (group_wait 1 s) seconds before the breaches crossed 3: had it
    # been routed to on-call, it would be here.
    assert all(alert["labels"]["alertname"] == "LeadRelaySlaBreaches" for alert in oncall.alerts())
    receivers = {group["labels"]["alertname"]: group["receiver"]["name"] for group in groups}
    assert receivers["LeadRelayServiceDown"] == "default"
    assert receivers["LeadRelaySlaBreaches"] == "oncall"
