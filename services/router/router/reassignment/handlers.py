"""Events the reassignment consumes: SLA breaches whose escalation says reassign."""

from functools import partial

from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.consumer import Handlers
from leadrelay.events import CloudEvent, SlaBreached
from router.context import RouterContext
from router.reassignment import service


async def on_sla_breached(event: CloudEvent[SlaBreached], session: AsyncSession, *, context: RouterContext) -> None:
    """Reassign a breached lead; a redelivered or stale breach (its assignment replaced) changes nothing."""
    await service.on_breach(session=session, context=context, breach=event.data)


def handlers(context: RouterContext) -> Handlers:
    """Message type to handler, bound to this process's context."""
    return Handlers().on(SlaBreached, partial(on_sla_breached, context=context))
