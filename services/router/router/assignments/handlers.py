"""Events the router consumes."""

from collections.abc import Sequence
from functools import partial

from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay import outbox
from leadrelay.consumer import Handlers
from leadrelay.events import CloudEvent, LeadAssigned, LeadScored, ScoreTrigger, new_event
from router.assignments import service
from router.config import RouterSettings

SOURCE = "leadrelay/router"


async def on_lead_scored(
    events: Sequence[CloudEvent[LeadScored]], session: AsyncSession, *, default_rep_id: str
) -> None:
    """Assign the leads; announce each new assignment, and an existing one again only for a re-driven lead.received.

    A re-driven lead.received means a lead.assigned may have been lost, so the assignment is
    announced again; a re-score (engagement, a new ICP) of an assigned lead is not announced,
    as a new lead.assigned would restart its SLA clocks.
    """
    lead_ids = [event.data.lead_id for event in events]
    decisions = await service.assign_many(session=session, lead_ids=lead_ids, default_rep_id=default_rep_id)
    announced: set[str] = set()
    for event, decision in zip(events, decisions, strict=True):
        if event.data.lead_id in announced:
            continue
        if not decision.new and event.data.trigger is not ScoreTrigger.RECEIVED:
            continue
        announced.add(event.data.lead_id)
        assignment = decision.assignment
        assigned = LeadAssigned(
            lead_id=assignment.lead_id,
            assignment_id=assignment.id,
            rep_id=assignment.rep_id,
            rule_path=assignment.rule_path,
            candidates=assignment.candidates,
            routing_version=assignment.routing_version,
            assigned_at=assignment.assigned_at,
        )
        outbox.add(session, new_event(assigned, source=SOURCE))


def handlers(settings: RouterSettings) -> Handlers:
    """Message type to handler, bound to this process's settings; a run of leads is assigned at once."""
    return Handlers().on_batch(LeadScored, partial(on_lead_scored, default_rep_id=settings.default_rep_id))
