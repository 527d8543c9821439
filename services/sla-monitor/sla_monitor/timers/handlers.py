"""Events the sla-monitor consumes."""

from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial

from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay import outbox
from leadrelay.consumer import Handlers
from leadrelay.events import CloudEvent, LeadAssigned, LeadQueued, SlaStarted, new_event
from sla_monitor.context import SlaContext
from sla_monitor.timers import service


async def on_lead_assigned(
    events: Sequence[CloudEvent[LeadAssigned]], session: AsyncSession, *, response_time: timedelta
) -> None:
    """Start the first-response timers (or re-announce them) and publish sla.started for each.

    A reassignment (sequence > 1) is a new assignment with a timer of its own; the timer of the
    assignment it replaced is closed.
    """
    assignments = [event.data for event in events]
    for timer in await service.start_many(session=session, assignments=assignments, response_time=response_time):
        started = SlaStarted(
            lead_id=timer.lead_id,
            obligation=timer.obligation,
            assignment_id=timer.assignment_id,
            rep_id=timer.rep_id,
            policy_version=timer.policy_version,
            started_at=timer.started_at,
            due_at=timer.due_at,
        )
        outbox.add(session, new_event(started, source=service.SOURCE))
    await _close_replaced(session, [(a.lead_id, a.assignment_id, a.assigned_at) for a in assignments if a.sequence > 1])


async def on_lead_queued(events: Sequence[CloudEvent[LeadQueued]], session: AsyncSession) -> None:
    """A reassignment to a team's queue: close the timer of the assignment it replaced (a queue has none)."""
    queued = [event.data for event in events]
    await _close_replaced(session, [(q.lead_id, q.assignment_id, q.queued_at) for q in queued if q.sequence > 1])


async def _close_replaced(session: AsyncSession, reassignments: Sequence[tuple[str, str, datetime]]) -> None:
    # In order: of two reassignments of a lead in one run, the later one closes the earlier one's timer.
    for lead_id, assignment_id, at in reassignments:
        await service.close_replaced(session=session, lead_id=lead_id, assignment_id=assignment_id, assigned_at=at)


def handlers(context: SlaContext) -> Handlers:
    """Message type to handler, bound to this process's context; a run of assignments is started at once."""
    response_time = timedelta(seconds=context.settings.first_response_seconds)
    return (
        Handlers()
        .on_batch(LeadAssigned, partial(on_lead_assigned, response_time=response_time))
        .on_batch(LeadQueued, on_lead_queued)
    )
