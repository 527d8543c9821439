"""Events notifications consume: sla.started gives an assignment's deadline to tell the rep."""

from collections.abc import Sequence
from functools import partial

from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.consumer import Handlers
from leadrelay.events import CloudEvent, SlaStarted
from router.context import RouterContext
from router.notifications import service


async def on_sla_started(
    events: Sequence[CloudEvent[SlaStarted]], session: AsyncSession, *, context: RouterContext
) -> None:
    """Keep the deadlines; deliveries waiting for one are sent at once, with it."""
    if await service.record_deadlines(session=session, started=[event.data for event in events]):
        service.after_commit(session, context.deliveries.wake)


def handlers(context: RouterContext) -> Handlers:
    """Message type to handler, bound to this process's context."""
    return Handlers().on_batch(SlaStarted, partial(on_sla_started, context=context))
