"""`python -m leadrelay.observe` (what `make observe` calls): Prometheus and Alertmanager for the `make run` stack.

The configs are deploy/prometheus/ and deploy/alertmanager/ (written for docker compose), rendered here
for 127.0.0.1: the services' ports, the on-call webhook's URL inline (Debian's Alertmanager 0.25 has no url_file)
and, for tests, shorter intervals. Everything goes under var/observe/.
"""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import yaml
from dotenv import dotenv_values

from leadrelay.broker import is_listening
from leadrelay.devstack import SERVICES

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
"""The repository's deploy/ folder (the shared package is installed editable from the checkout)."""
ONCALL_URL_FILE = "/run/secrets/oncall_webhook_url"
"""Where deploy/alertmanager/alertmanager.yml reads the on-call webhook's URL (the compose secret)."""
DEFAULT_PORTS = {"PROMETHEUS_PORT": 9090, "ALERTMANAGER_PORT": 9093, "OBSERVE_ONCALL_PORT": 9099}
PROMETHEUS_BINARIES = ("prometheus",)
ALERTMANAGER_BINARIES = ("prometheus-alertmanager", "alertmanager")  # Debian's name, then upstream's

logger = logging.getLogger("leadrelay.observe")


def prometheus_config(
    *,
    targets: Mapping[str, str],
    alertmanager: str,
    deploy: Path = DEPLOY,
    scrape_interval: str | None = None,
    evaluation_interval: str | None = None,
) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml scraping `targets` (service name to host:port), alerting `alertmanager`."""
    folder = deploy / "prometheus"
    config: dict[str, Any] = yaml.safe_load((folder / "prometheus.yml").read_text())
    for scrape in config["scrape_configs"]:
        for group in scrape["static_configs"]:
            group["targets"] = [targets[group["labels"]["service"]]]
    config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager]}]}]
    # Rule files are relative to the config file; the rendered one lives elsewhere.
    config["rule_files"] = [str((folder / name).resolve()) for name in config["rule_files"]]
    if scrape_interval is not None:
        config["global"]["scrape_interval"] = scrape_interval
    if evaluation_interval is not None:
        config["global"]["evaluation_interval"] = evaluation_interval
    return config


def alertmanager_config(
    *,
    oncall_url: str,
    deploy: Path = DEPLOY,
    group_wait: str | None = None,
    group_interval: str | None = None,
) -> dict[str, Any]:
    """deploy/alertmanager/alertmanager.yml with the on-call webhook's URL (and shorter waits, for tests)."""
    config: dict[str, Any] = yaml.safe_load((deploy / "alertmanager" / "alertmanager.yml").read_text())
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            if webhook.get("url_file") == ONCALL_URL_FILE:
                del webhook["url_file"]
                webhook["url"] = oncall_url
    routes = [config["route"]]
    while routes:
        route = routes.pop()
        for key, value in (("group_wait", group_wait), ("group_interval", group_interval)):
            if value is not None and (route is config["route"] or key in route):
                route[key] = value
        routes.extend(route.get("routes", []))
    return config


def write_config(path: Path, config: Mapping[str, Any]) -> Path:
    """Write a rendered config (YAML) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    return path


def find_binary(names: tuple[str, ...]) -> str | None:
    """The first of `names` on PATH."""
    return next((found for name in names if (found := shutil.which(name))), None)


@dataclass
class OncallSink:
    """A local stand-in for the on-call webhook: keeps (and reports) every Alertmanager notification it is sent."""

    port: int
    host: str = "127.0.0.1"
    on_notification: Callable[[dict[str, Any]], None] | None = None
    notifications: list[dict[str, Any]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        """The webhook URL to give Alertmanager."""
        return f"http://{self.host}:{self.port}/oncall"

    def start(self) -> None:
        """Serve in a daemon thread."""
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    notification = json.loads(body)
                except ValueError:
                    self.send_response(HTTPStatus.BAD_REQUEST)
                    self.end_headers()
                    return
                with sink._lock:
                    sink.notifications.append(notification)
                if sink.on_notification is not None:
                    sink.on_notification(notification)
                self.send_response(HTTPStatus.OK)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the notifications are reported instead."""

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        threading.Thread(target=self._server.serve_forever, name="oncall-sink", daemon=True).start()

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert of every notification received so far."""
        with self._lock:
            return [alert for notification in self.notifications for alert in notification.get("alerts", [])]


def describe(notification: Mapping[str, Any]) -> str:
    """One line for a notification: status, and each alert's name and team or service (labels are bounded)."""
    alerts = [
        f"{alert['labels'].get('alertname')}"
        f"({alert['labels'].get('team') or alert['labels'].get('service') or ''}) {alert.get('status')}"
        for alert in notification.get("alerts", [])
    ]
    return f"on-call notified [{notification.get('status')}]: " + ", ".join(alerts)


def _port(settings: Mapping[str, str | None], variable: str, default: int) -> int:
    return int(settings.get(variable) or default)


def local_targets(settings: Mapping[str, str | None]) -> dict[str, str]:
    """Each service's 127.0.0.1 address under `make run` (the Procfile's INTAKE_PORT, SLA_MONITOR_PORT, ...)."""
    return {
        name: f"127.0.0.1:{_port(settings, name.upper().replace('-', '_') + '_PORT', port)}"
        for name, port in SERVICES.items()
    }


def _say(lines: list[str]) -> None:
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def main() -> None:
    """Render the configs, start Prometheus and Alertmanager (and a local on-call sink), stop all on Ctrl-C."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    settings = {**os.environ, **dotenv_values(".env")}
    prometheus, alertmanager = find_binary(PROMETHEUS_BINARIES), find_binary(ALERTMANAGER_BINARIES)
    if prometheus is None or alertmanager is None:
        sys.exit(
            "make observe needs Prometheus and Alertmanager: "
            "sudo apt-get install -y --no-install-recommends prometheus prometheus-alertmanager"
        )
    ports = {variable: _port(settings, variable, default) for variable, default in DEFAULT_PORTS.items()}
    oncall_url = settings.get("ONCALL_WEBHOOK_URL")
    needed = [variable for variable in ports if variable != "OBSERVE_ONCALL_PORT" or not oncall_url]
    for variable in needed:
        if is_listening("127.0.0.1", ports[variable]):
            sys.exit(
                f"Port {ports[variable]} is taken: free it (Debian's packages start their own services: "
                f"sudo systemctl disable --now prometheus prometheus-alertmanager), or set {variable}."
            )
    targets = local_targets(settings)
    down = [name for name, target in targets.items() if not is_listening("127.0.0.1", int(target.rsplit(":", 1)[1]))]
    work = Path("var/observe")
    prometheus_address = f"127.0.0.1:{ports['PROMETHEUS_PORT']}"
    alertmanager_address = f"127.0.0.1:{ports['ALERTMANAGER_PORT']}"
    sink: OncallSink | None = None
    if not oncall_url:
        sink = OncallSink(ports["OBSERVE_ONCALL_PORT"], on_notification=lambda n: logger.info(describe(n)))
        oncall_url = sink.url
    prometheus_file = write_config(
        work / "prometheus.yml", prometheus_config(targets=targets, alertmanager=alertmanager_address)
    )
    alertmanager_file = write_config(work / "alertmanager.yml", alertmanager_config(oncall_url=oncall_url))
    commands = {
        "prometheus": [
            prometheus,
            f"--config.file={prometheus_file}",
            f"--storage.tsdb.path={work / 'prometheus'}",
            f"--web.listen-address={prometheus_address}",
            f"--web.external-url=http://{prometheus_address}",
        ],
        "alertmanager": [
            alertmanager,
            f"--config.file={alertmanager_file}",
            f"--storage.path={work / 'alertmanager'}",
            f"--web.listen-address={alertmanager_address}",
            f"--web.external-url=http://{alertmanager_address}",
            "--cluster.listen-address=",  # one instance: no gossip port (9094 is the compose broker's)
        ],
    }
    _say(
        [
            "",
            "LeadRelay observability (for the `make run` stack)",
            f"  prometheus   http://{prometheus_address}  (alerts: /alerts, targets: /targets)",
            f"  alertmanager http://{alertmanager_address}",
            f"  scraping     {', '.join(f'{name} {target}' for name, target in targets.items())}",
            *([f"               not answering yet: {', '.join(down)} (start `make run`)"] if down else []),
            f"  on-call      {oncall_url}"
            + ("  (local sink: notifications are logged here; set ONCALL_WEBHOOK_URL for yours)" if sink else ""),
            f"  configs      {prometheus_file}, {alertmanager_file} (rendered from deploy/)",
            f"  logs, data   {work}/",
            "  grafana      docker compose (see docs/operations.md#observability)",
            "",
            "  Ctrl-C stops both.",
            "",
        ]
    )
    sys.exit(_supervise(commands, work=work, sink=sink))


def _supervise(commands: Mapping[str, list[str]], *, work: Path, sink: OncallSink | None) -> int:
    """Run the processes until one exits or Ctrl-C; stop the rest. 130 after Ctrl-C, as a shell reports it."""
    logs: dict[str, IO[bytes]] = {}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    interrupted = threading.Event()
    # Ctrl-C reaches the whole process group: the servers may exit before this process notices.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: interrupted.set())
    try:
        if sink is not None:
            sink.start()
        for name, command in commands.items():
            logs[name] = open(work / f"{name}.log", "ab")  # noqa: SIM115  (open while the process runs)
            processes[name] = subprocess.Popen(command, stdout=logs[name], stderr=subprocess.STDOUT)
        while not interrupted.wait(0.5):
            exited = [name for name, process in processes.items() if process.poll() is not None]
            if exited and not interrupted.is_set():
                tail = (work / f"{exited[0]}.log").read_text(errors="replace").splitlines()[-15:]
                _say([f"{exited[0]} exited ({processes[exited[0]].returncode}); last lines of its log:", *tail])
                return 1
        return 130
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in logs.values():
            log.close()
        if sink is not None:
            sink.stop()


if __name__ == "__main__":
    main()
