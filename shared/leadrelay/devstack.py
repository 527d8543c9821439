"""`python -m leadrelay.devstack` (what `make run` calls): banner, honcho runs the Procfile, demo data seeded."""

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from dotenv import dotenv_values

from leadrelay import seeding
from leadrelay.apikeys import DEFAULT_DEMO_MARKETING_KEY, DEFAULT_DEMO_SALES_KEY, DEFAULT_DEV_API_KEY
from leadrelay.broker import is_listening
from leadrelay.demo import (
    DEFAULT_RECEIVER_PORT,
    DEMO_RECEIVER_SECRET,
    DEMO_SOURCES,
    DEMO_STANDARD_SECRET,
    DEMO_WEBHOOK_SECRET,
    RECEIVER_PORT_VARIABLE,
    RECEIVER_SECRET_VARIABLE,
)

SERVICES = {"intake": 8000, "scoring": 8001, "router": 8002, "sla-monitor": 8003}


def _variable(service: str, setting: str) -> str:
    """The Procfile's per-service override, e.g. SLA_MONITOR_PORT."""
    return f"{service.upper().replace('-', '_')}_{setting}"


def _shown_key(settings: dict[str, str | None], variable: str, default: str) -> str:
    """The documented default key as is; a key the user chose is a secret: name where it is instead."""
    chosen = settings.get(variable)
    return default if not chosen or chosen == default else f"${variable}"


def main() -> None:
    """Print where everything is and hand over to honcho (which stops all on Ctrl-C)."""
    Path("var").mkdir(exist_ok=True)
    # honcho loads .env over the environment of every process; do the same so the banner tells the truth.
    settings = {**os.environ, **dotenv_values(".env")}
    external_broker = settings.get("KAFKA_BOOTSTRAP_SERVERS")
    processes = list(SERVICES)
    if external_broker:
        broker_line = f"{external_broker} (from KAFKA_BOOTSTRAP_SERVERS)"
    else:
        port = int(settings.get("EMBEDDED_BROKER_PORT") or 9092)
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{port}"
        if is_listening("127.0.0.1", port):
            sys.exit(f"Port {port} is taken: free it, or set EMBEDDED_BROKER_PORT or KAFKA_BOOTSTRAP_SERVERS.")
        processes.insert(0, "broker")
        broker_line = f"127.0.0.1:{port} (embedded Tansu, memory only)"
    receiver_port = int(settings.get(RECEIVER_PORT_VARIABLE) or DEFAULT_RECEIVER_PORT)
    if is_listening("127.0.0.1", receiver_port):
        sys.exit(f"Port {receiver_port} is taken: free it, or set {RECEIVER_PORT_VARIABLE}.")
    processes.append("receiver")
    # The embedded broker answers group joins after about half the session timeout; keep it short locally.
    os.environ.setdefault("KAFKA_SESSION_TIMEOUT_MS", "6000")
    os.environ.setdefault("KAFKA_HEARTBEAT_INTERVAL_MS", "1000")
    api_key = _shown_key(settings, "LEADRELAY_DEV_API_KEY", DEFAULT_DEV_API_KEY)
    marketing_key = _shown_key(settings, "LEADRELAY_DEMO_MARKETING_KEY", DEFAULT_DEMO_MARKETING_KEY)
    sales_key = _shown_key(settings, "LEADRELAY_DEMO_SALES_KEY", DEFAULT_DEMO_SALES_KEY)
    receiver_secret = _shown_key(settings, RECEIVER_SECRET_VARIABLE, DEMO_RECEIVER_SECRET)
    ports = {name: settings.get(_variable(name, "PORT")) or default for name, default in SERVICES.items()}
    databases = [
        f"  {name:<12} {settings.get(_variable(name, 'DATABASE_URL')) or f'./var/{name}.db (SQLite)'}"
        for name in SERVICES
    ]
    lines = [
        "",
        "LeadRelay development stack",
        f"  broker       {broker_line}",
        *(f"  {name:<12} http://127.0.0.1:{port}  (docs: /docs, metrics: /metrics)" for name, port in ports.items()),
        "  databases",
        *("  " + line for line in databases),
        f"  API key      {api_key}  (team ops, every scope)",
        f"  demo keys    {marketing_key}  (team marketing: co-signs the ICP and SLA)",
        f"               {sales_key}  (team sales: approves the ICP and SLA, owns routing)",
        "  (development keys: never seeded with ENVIRONMENT=production)",
        f"  webhooks     demo sources {', '.join(DEMO_SOURCES)}",
        f"               secret {DEMO_WEBHOOK_SECRET} (standard: {DEMO_STANDARD_SECRET})",
        f"  receiver     http://127.0.0.1:{receiver_port}  (leadrelay receiver: prints what each demo rep is told)",
        f"               secret {receiver_secret} (demo reps' webhooks: /reps/<rep id>)",
        "  demo         .venv/bin/leadrelay demo --rate 5 --duration 60   (with LEADRELAY_API_KEY set to the API key)",
        "               reps accept about half of its leads; the demo SLA (deploy/demo/sla.yaml, docs/sla.md) warns",
        "               at half of windows of minutes, then breaches, reminds, reassigns and tells the team's manager",
        "",
        f"  try: curl -s -X POST http://127.0.0.1:{ports['intake']}/v1/leads \\",
        f"         -H \"Authorization: Bearer {api_key}\" -H 'Content-Type: application/json' \\",
        '         -d \'{"email": "ada@example.com", "company": "Analytical Engines", "job_title": "CTO"}\'',
        "",
        "  Ctrl-C stops everything.",
        "",
    ]
    _say(lines)
    bin_dir = Path(sys.executable).parent
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"  # the Procfile's `python`
    honcho = [str(bin_dir / "honcho"), "start", "--no-colour", *processes]
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    production = settings.get("ENVIRONMENT") == "production"
    sys.exit(asyncio.run(_supervise(honcho, seed=None if production else partial(_seed, urls, settings))))


def _say(lines: list[str]) -> None:
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


async def _seed(urls: dict[str, str], settings: Mapping[str, str | None]) -> None:
    """Seed the demo agreements, teams and reps once the services know the demo keys; a line each."""
    async with httpx.AsyncClient(timeout=10) as client:
        async for line in seeding.seed_all(client, urls=urls, settings=settings):
            _say([line])


async def _supervise(honcho: list[str], *, seed: Callable[[], Coroutine[Any, Any, None]] | None) -> int:
    """Run honcho (which stops all on Ctrl-C) and seed beside it; honcho's exit code, as a shell reports it."""
    loop = asyncio.get_running_loop()
    process: asyncio.subprocess.Process | None = None

    def forward(signum: signal.Signals) -> None:
        # Ctrl-C reaches honcho too (one process group); a signal sent to this process alone must as well.
        if process is not None and process.returncode is None:
            process.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, forward, signum)
    process = await asyncio.create_subprocess_exec(*honcho)
    seeding_task = asyncio.create_task(seed()) if seed is not None else None
    code = await process.wait()
    if seeding_task is not None:
        seeding_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await seeding_task
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    main()
