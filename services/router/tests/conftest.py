"""The router's test settings: the notification transport's tests run on uvloop too."""

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop

BOTH_LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]] | None:
    """The services run on uvloop, whose transports differ from asyncio's: the transport is tested on both."""
    if item.path.name == "test_router_transport.py":
        return BOTH_LOOPS
    return None
