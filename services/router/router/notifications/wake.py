"""The per-app hand-off that wakes the delivery job at once when deliveries or deadlines are committed."""

import asyncio
from dataclasses import dataclass, field


@dataclass
class DeliveryWake:
    """Set after a commit that made work for the delivery job; the job clears it before it looks for work."""

    event: asyncio.Event = field(default_factory=asyncio.Event)

    def wake(self) -> None:
        """Tell the job there is work (safe to call from a commit hook)."""
        self.event.set()
