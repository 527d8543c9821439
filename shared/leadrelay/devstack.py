"""`python -m leadrelay.devstack` (what `make run` calls): banner, then honcho runs the Procfile."""

import os
import sys
from pathlib import Path

from leadrelay.apikeys import DEFAULT_DEV_API_KEY
from leadrelay.broker import is_listening

SERVICES = {"intake": 8000, "scoring": 8001, "router": 8002, "sla-monitor": 8003}
EMBEDDED_BROKER = "127.0.0.1:9092"


def main() -> None:
    """Print where everything is and hand over to honcho (which stops all on Ctrl-C)."""
    Path("var").mkdir(exist_ok=True)
    external_broker = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    processes = list(SERVICES)
    if external_broker:
        broker_line = f"{external_broker} (from KAFKA_BOOTSTRAP_SERVERS)"
    else:
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = EMBEDDED_BROKER
        host, port = EMBEDDED_BROKER.split(":")
        if is_listening(host, int(port)):
            sys.exit(
                f"Port {port} is taken: stop what listens there or set KAFKA_BOOTSTRAP_SERVERS to a running broker."
            )
        processes.insert(0, "broker")
        broker_line = f"{EMBEDDED_BROKER} (embedded Tansu, memory only)"
    # The embedded broker answers group joins after half the session timeout; keep it short locally.
    os.environ.setdefault("KAFKA_SESSION_TIMEOUT_MS", "6000")
    os.environ.setdefault("KAFKA_HEARTBEAT_INTERVAL_MS", "1000")
    api_key = os.environ.get("LEADRELAY_DEV_API_KEY", DEFAULT_DEV_API_KEY)
    lines = [
        "",
        "LeadRelay development stack",
        f"  broker       {broker_line}",
        *(f"  {name:<12} http://127.0.0.1:{port}  (docs: /docs, metrics: /metrics)" for name, port in SERVICES.items()),
        "  databases    ./var/*.db (SQLite)",
        f"  API key      {api_key}",
        "",
        "  try: curl -s -X POST http://127.0.0.1:8000/v1/leads \\",
        f"         -H 'Authorization: Bearer {api_key}' -H 'Content-Type: application/json' \\",
        '         -d \'{"email": "ada@example.com", "company": "Analytical Engines", "job_title": "CTO"}\'',
        "",
        "  Ctrl-C stops everything.",
        "",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
    bin_dir = Path(sys.executable).parent
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"  # the Procfile's `python`
    honcho = bin_dir / "honcho"
    os.execv(str(honcho), [str(honcho), "start", "--no-colour", *processes])


if __name__ == "__main__":
    main()
