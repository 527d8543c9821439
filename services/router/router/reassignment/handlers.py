"""Events the reassignment consumes: SLA breaches, whose escalation ladder the router walks in order."""

import logging
from functools import partial

from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.consumer import Handlers
from leadrelay.events import CloudEvent, EscalationStep, SlaBreached
from router.assignments import service as assignments
from router.context import RouterContext
from router.notifications import escalations
from router.reassignment import service

logger = logging.getLogger(__name__)


async def on_sla_breached(event: CloudEvent[SlaBreached], session: AsyncSession, *, context: RouterContext) -> None:
    """Walk the breach's escalation in order: remind the rep, reassign, notify the manager.

    Only while the breached assignment is the lead's current one, judged once before the first
    step: a reminder before a reassignment still goes to the rep who breached, and a breach of a
    replaced assignment (or one redelivered after its reassignment) does nothing. A redelivered
    breach makes no second delivery (stable webhook ids).
    """
    breach = event.data
    current = await assignments.get_current(session=session, lead_id=breach.lead_id)
    if current is None or current.id != breach.assignment_id:
        logger.info("breach of a replaced assignment ignored", extra={"lead_id": breach.lead_id})
        return
    due = 0
    for step in breach.escalation:
        if step is EscalationStep.REMIND:
            due += await escalations.remind(session=session, breach=breach, assignment=current)
        elif step is EscalationStep.REASSIGN:
            await service.on_breach(session=session, context=context, breach=breach)
        elif step is EscalationStep.NOTIFY_MANAGER:
            due += await escalations.notify_manager(session=session, breach=breach, assignment=current)
    if due:
        context.deliveries.on_commit(session)


def handlers(context: RouterContext) -> Handlers:
    """Message type to handler, bound to this process's context."""
    return Handlers().on(SlaBreached, partial(on_sla_breached, context=context))
