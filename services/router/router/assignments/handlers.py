"""Events the router consumes: scored leads are assigned."""

from collections.abc import Sequence
from functools import partial

from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay import outbox
from leadrelay.consumer import Handlers
from leadrelay.db import after_commit
from leadrelay.events import AssignmentTrigger, CloudEvent, LeadScored, ScoreTrigger, new_event, utcnow
from router.assignments import service
from router.assignments.routing import Routing
from router.context import RouterContext
from router.notifications import service as notifications

SOURCE = "leadrelay/router"


async def on_lead_scored(
    events: Sequence[CloudEvent[LeadScored]], session: AsyncSession, *, context: RouterContext
) -> None:
    """Remember the scored leads and assign the new ones; announce new assignments (and old ones for a re-drive).

    A re-driven lead.received means an announcement may have been lost, so it is made again; a
    re-score (engagement, a new ICP) of an assigned lead is not announced, as a new lead.assigned
    would restart its SLA clocks.
    """
    leads = [event.data for event in events]
    await service.remember(session=session, leads=leads)
    at = utcnow()
    rules = await context.rulesets.active(session)
    roster = await context.rosters.load(session, at=at)
    made: dict[str, tuple[Routing, float]] = {}

    def observe(lead_id: str, routing: Routing, seconds: float) -> None:
        made[lead_id] = (routing, seconds)

    decisions = await service.assign_many(
        session=session, leads=leads, rules=rules, roster=roster, at=at, observe=observe
    )
    # Only decisions this transaction keeps count: a lead another replica assigned first is not.
    kept = [made[lead_id] for lead_id in {decision.assignment.lead_id for decision in decisions if decision.new}]

    def count() -> None:
        for routing, seconds in kept:
            context.metrics.decided(routing, trigger=AssignmentTrigger.ROUTED.value, seconds=seconds)

    after_commit(session, count)
    await notifications.enqueue(
        session=session,
        context=context,
        reps=roster.reps,
        assigned=[
            (decision.assignment, scored) for scored, decision in zip(leads, decisions, strict=True) if decision.new
        ],
    )
    announced: set[str] = set()
    for scored, decision in zip(leads, decisions, strict=True):
        if scored.lead_id in announced:
            continue
        if not decision.new and scored.trigger is not ScoreTrigger.RECEIVED:
            continue
        announced.add(scored.lead_id)
        outbox.add(session, new_event(service.announcement(decision.assignment, scored), source=SOURCE))


def handlers(context: RouterContext) -> Handlers:
    """Message type to handler, bound to this process's context; a run of leads is assigned at once."""
    return Handlers().on_batch(LeadScored, partial(on_lead_scored, context=context))
