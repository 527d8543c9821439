"""Shared typing for the cross-service tests."""

from collections.abc import Awaitable, Callable

from leadrelay.testing import Stack

StackFactory = Callable[..., Awaitable[Stack]]
