"""Events notifications consume: sla.started gives an assignment's deadline to tell the rep; sla.warning a heads-up."""

import logging
from collections.abc import Sequence
from functools import partial

from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.consumer import Handlers
from leadrelay.events import CloudEvent, SlaStarted, SlaWarning
from router.context import RouterContext
from router.notifications import escalations, service

logger = logging.getLogger(__name__)


async def on_sla_started(
    events: Sequence[CloudEvent[SlaStarted]], session: AsyncSession, *, context: RouterContext
) -> None:
    """Keep the deadlines; deliveries waiting for one are sent at once, with it."""
    if await service.record_deadlines(session=session, started=[event.data for event in events]):
        context.deliveries.on_commit(session)


async def on_sla_warning(
    events: Sequence[CloudEvent[SlaWarning]], session: AsyncSession, *, context: RouterContext
) -> None:
    """Give the rep a heads-up on each channel; a warning of a replaced assignment, or seen before, sends nothing."""
    current = await escalations.current_of(session=session, events=[event.data for event in events])
    due = 0
    for event in events:
        assignment = current.get(event.data.assignment_id)
        if assignment is None:
            logger.info("warning of a replaced assignment ignored", extra={"lead_id": event.data.lead_id})
            continue
        due += await escalations.warn(session=session, warning=event.data, assignment=assignment)
    if due:
        context.deliveries.on_commit(session)


def handlers(context: RouterContext) -> Handlers:
    """Message type to handler, bound to this process's context."""
    return (
        Handlers()
        .on_batch(SlaStarted, partial(on_sla_started, context=context))
        .on_batch(SlaWarning, partial(on_sla_warning, context=context))
    )
