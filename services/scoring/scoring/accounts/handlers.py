"""Events the account book consumes."""

from collections.abc import Sequence

from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.events import AccountChanged, CloudEvent
from scoring.accounts import service


async def on_account_changed(events: Sequence[CloudEvent[AccountChanged]], session: AsyncSession) -> None:
    """Store a run of account changes; a redelivered or out-of-date change leaves the book as it is."""
    await service.apply_changes(session=session, changes=[event.data for event in events])
