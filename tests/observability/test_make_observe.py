"""`make observe` (python -m leadrelay.observe): Prometheus and Alertmanager start on the rendered configs,
scrape the `make run` ports, and stop with Ctrl-C."""

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import httpx

from leadrelay.broker import is_listening
from leadrelay.testing import free_port, wait_until


async def test_observe_starts_prometheus_and_alertmanager_and_ctrl_c_stops_both(
    prometheus_binary: str, alertmanager_binary: str, tmp_path: Path
) -> None:
    ports = {name: free_port() for name in ("PROMETHEUS_PORT", "ALERTMANAGER_PORT", "OBSERVE_ONCALL_PORT")}
    env = {
        **{name: value for name, value in os.environ.items() if name != "ONCALL_WEBHOOK_URL"},
        **{name: str(port) for name, port in ports.items()},
        "SLA_MONITOR_PORT": "18003",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "leadrelay.observe", cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE
    )
    prometheus = f"http://127.0.0.1:{ports['PROMETHEUS_PORT']}"
    alertmanager = f"http://127.0.0.1:{ports['ALERTMANAGER_PORT']}"
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:

            async def ready(url: str) -> bool:
                return (await client.get(f"{url}/-/ready")).status_code == 200

            await wait_until(lambda: ready(prometheus), timeout=60, what="Prometheus to be ready")
            await wait_until(lambda: ready(alertmanager), timeout=60, what="Alertmanager to be ready")

            async def discovered(what: str, key: str, count: int) -> list[dict[str, Any]] | None:
                found: list[dict[str, Any]] = (await client.get(f"{prometheus}/api/v1/{what}")).json()["data"][key]
                return found if len(found) == count else None

            # Discovery runs just after Prometheus is ready.
            targets = await wait_until(lambda: discovered("targets", "activeTargets", 4), timeout=30, what="targets")
            active = await wait_until(lambda: discovered("alertmanagers", "activeAlertmanagers", 1), timeout=30)
            rules = (await client.get(f"{prometheus}/api/v1/rules")).json()["data"]["groups"]
        assert sorted((target["labels"]["service"], target["scrapeUrl"]) for target in targets) == [
            ("intake", "http://127.0.0.1:8000/metrics"),
            ("router", "http://127.0.0.1:8002/metrics"),
            ("scoring", "http://127.0.0.1:8001/metrics"),
            ("sla-monitor", "http://127.0.0.1:18003/metrics"),
        ]
        assert sum(len(group["rules"]) for group in rules) == 7
        assert [am["url"] for am in active] == [f"{alertmanager}/api/v2/alerts"]
        assert is_listening("127.0.0.1", ports["OBSERVE_ONCALL_PORT"])  # the local on-call sink
        assert (tmp_path / "var" / "observe" / "prometheus.yml").is_file()
        assert (tmp_path / "var" / "observe" / "alertmanager.yml").is_file()
    finally:
        process.send_signal(signal.SIGINT)
        assert process.stdout is not None
        banner = (await asyncio.wait_for(process.stdout.read(), timeout=30)).decode()
        code = await asyncio.wait_for(process.wait(), timeout=30)

    assert code == 130
    assert f"prometheus   {prometheus}" in banner
    assert f"alertmanager {alertmanager}" in banner
    assert "local sink" in banner
    assert not any(is_listening("127.0.0.1", port) for port in ports.values())
