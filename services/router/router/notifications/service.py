"""Deliveries: created with the assignment, in its transaction; sent by the delivery job (see jobs.py).

CONTRACT (the notifications work fills this in): `enqueue` is called by every code path that
creates an assignment to a rep (first routing, reassignment), in the same transaction.
"""

from collections.abc import Sequence

from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.events import LeadScored
from router.assignments.models import Assignment


async def enqueue(*, session: AsyncSession, assigned: Sequence[tuple[Assignment, LeadScored | None]]) -> None:
    """One pending delivery per channel of each assignment's rep (queued and nurtured decisions have none)."""
    del session, assigned  # filled in by the notifications work
