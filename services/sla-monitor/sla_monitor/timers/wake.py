"""Waking the timer job when a sooner instant is committed in this process."""

import asyncio
import contextlib
from datetime import datetime


class TimerWake:
    """The timer job sleeps until its next instant; a commit with a sooner one wakes it (`sooner`)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.planned: datetime | None = None
        """The instant the job plans to wake at (None: not sleeping, or nothing planned)."""

    def sooner(self, at: datetime | None) -> None:
        """Wake the job if `at` comes before what it planned (call after the commit that stored `at`)."""
        if at is not None and (self.planned is None or at < self.planned):
            self._event.set()

    async def wait(self, seconds: float) -> None:
        """Sleep up to `seconds`, or until woken.

        A `sooner` made since the last wait (while the job looked for due timers) returns at once; either
        way the wake is spent and nothing is planned afterwards, so the job looks again before sleeping.
        """
        try:
            if seconds > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(seconds):
                        await self._event.wait()
        finally:
            self._event.clear()
            self.planned = None
