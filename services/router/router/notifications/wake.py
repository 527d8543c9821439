"""The hand-off that wakes the delivery job at once when deliveries or deadlines are committed, on any replica."""

import asyncio
from dataclasses import dataclass, field

from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.db import after_commit, notify_on_commit

DELIVERIES_CHANNEL = "leadrelay_router_deliveries"
"""On PostgreSQL, commits that made work for the delivery job NOTIFY this channel, so the job wakes on
whichever replica leads it, not only on the replica whose consumer committed."""


@dataclass
class DeliveryWake:
    """Set after a commit that made work for the delivery job; the job clears it before it looks for work."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    leading: bool = False
    """Whether the job runs in this process (it leads): then no other replica needs waking."""

    def wake(self) -> None:
        """Tell the job there is work (safe to call from a commit hook)."""
        self.event.set()

    def on_commit(self, session: AsyncSession) -> None:
        """Wake this process's job once `session` commits, and, on PostgreSQL, the leading replica's (NOTIFY)."""
        if not self.leading:
            notify_on_commit(session, DELIVERIES_CHANNEL)
        after_commit(session, self.wake)
