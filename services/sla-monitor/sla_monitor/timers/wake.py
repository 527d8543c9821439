"""Waking the timer job when a sooner instant is committed, in this process or, on PostgreSQL, on any replica."""

import asyncio
import contextlib
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.db import after_commit, notify_on_commit
from leadrelay.events import utcnow

TIMERS_CHANNEL = "leadrelay_sla_timers"
"""On PostgreSQL, a commit with an instant the leading timer job might otherwise see too late NOTIFYs this
channel, which that job LISTENs to on whichever replica leads it."""


class TimerWake:
    """The timer job sleeps until its next instant; a commit with a sooner one wakes it (`sooner`)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.planned: datetime | None = None
        """The instant the job plans to wake at (None: not sleeping, or nothing planned)."""

    def wake(self) -> None:
        """Wake the job to look again (another replica committed a timer it may need sooner)."""
        self._event.set()

    def on_commit(self, session: AsyncSession, at: datetime, *, max_sleep_seconds: float) -> None:
        """Once `session` commits an instant `at`: wake this process's job if it is sooner than planned, and, on
        PostgreSQL, the leading job on any replica when `at` comes before its longest sleep could end (NOTIFY)."""
        if at < utcnow() + timedelta(seconds=max_sleep_seconds):
            notify_on_commit(session, TIMERS_CHANNEL)
        after_commit(session, lambda: self.sooner(at))

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
