"""Events the account book consumes (a stub until the account-book work lands; the lead keeps that version)."""

from collections.abc import Sequence

from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.events import AccountChanged, CloudEvent
from scoring.accounts import service


async def on_account_changed(events: Sequence[CloudEvent[AccountChanged]], session: AsyncSession) -> None:
    """Store the accounts a CRM sync changed."""
    await service.apply_changes(session=session, changes=[event.data for event in events])
