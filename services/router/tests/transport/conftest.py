"""The notification transport's tests run on uvloop, whose transports differ from asyncio's, as well as on asyncio's
own loop (the hook's factories parametrize every async test in this folder)."""

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """asyncio's loop and uvloop, the one the services run on."""
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
