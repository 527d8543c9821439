"""Shared typing and helpers for the cross-service tests."""

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leadrelay.testing import DEV_API_KEY, Stack

StackFactory = Callable[..., Awaitable[Stack]]

LEADRELAY = Path(sys.executable).parent / "leadrelay"


@dataclass
class Run:
    """One finished `leadrelay` invocation."""

    code: int
    stdout: str
    stderr: str
    finished_at: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)


async def leadrelay(*args: str, key: str | None = DEV_API_KEY) -> Run:
    """Run the installed `leadrelay` executable without blocking the loop."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("LEADRELAY_")}
    if key is not None:
        env["LEADRELAY_API_KEY"] = key
    process = await asyncio.create_subprocess_exec(
        LEADRELAY, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return Run(process.returncode, stdout.decode(), stderr.decode(), time.monotonic())
