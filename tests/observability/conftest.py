"""Prometheus's and Alertmanager's own tools and binaries: skipped when missing, unless REQUIRE_PROMTOOL=1."""

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from leadrelay.observe import ALERTMANAGER_BINARIES, PROMETHEUS_BINARIES, find_binary

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
INSTALL = "apt-get install -y --no-install-recommends prometheus prometheus-alertmanager"


def require(names: tuple[str, ...]) -> str:
    """The binary's path; skip the test when it is missing (fail instead with REQUIRE_PROMTOOL=1)."""
    found = find_binary(names)
    if found is None:
        message = f"{names[0]} is not installed ({INSTALL})"
        if os.environ.get("REQUIRE_PROMTOOL") == "1":
            pytest.fail(f"REQUIRE_PROMTOOL=1 but {message}")
        pytest.skip(f"{message}; set REQUIRE_PROMTOOL=1 to fail instead")
    return found


@pytest.fixture
def promtool() -> str:
    """Path of promtool (Debian's prometheus package)."""
    return require(("promtool",))


@pytest.fixture
def amtool() -> str:
    """Path of amtool (Debian's prometheus-alertmanager package)."""
    return require(("amtool",))


@pytest.fixture
def prometheus_binary() -> str:
    """Path of the Prometheus server."""
    return require(PROMETHEUS_BINARIES)


@pytest.fixture
def alertmanager_binary() -> str:
    """Path of the Alertmanager server."""
    return require(ALERTMANAGER_BINARIES)


def run(*command: str) -> subprocess.CompletedProcess[str]:
    """Run a tool to completion (they take milliseconds), output captured."""
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@asynccontextmanager
async def server(command: list[str], log: Path) -> AsyncIterator[None]:
    """A server process (Prometheus, Alertmanager) for the test's duration, its output in `log`."""
    with log.open("ab") as output:
        process = await asyncio.create_subprocess_exec(*command, stdout=output, stderr=asyncio.subprocess.STDOUT)
        try:
            yield
        finally:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                await process.wait()
