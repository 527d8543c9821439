"""Events the clocks consume: router's team.changed."""

from collections.abc import Sequence
from functools import partial

from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.consumer import Handlers
from leadrelay.events import CloudEvent, TeamChanged, utcnow
from sla_monitor.clocks import service
from sla_monitor.context import SlaContext
from sla_monitor.timers import service as timers


async def on_team_changed(
    events: Sequence[CloudEvent[TeamChanged]], session: AsyncSession, *, context: SlaContext
) -> None:
    """Keep each newer calendar and move the team's open business-clock deadlines onto it."""
    now = utcnow()
    moved = 0
    # In order: of two versions of a team in one run, the later one is stored last (or not at all if older).
    for event in events:
        record = await service.store(session=session, team=event.data)
        if record is None:
            continue
        calendar = service.calendar_of(record)
        moved += await timers.reschedule_team(session=session, team_id=record.team_id, calendar=calendar, now=now)
    if moved:
        # A deadline may have come sooner than the timer job plans to wake: let it look again once committed.
        context.wake.on_commit(session, now, max_sleep_seconds=context.settings.timer_max_sleep_seconds)


def handlers(context: SlaContext) -> Handlers:
    """team.changed keeps the team's calendar and moves its open business-clock deadlines."""
    return Handlers().on_batch(TeamChanged, partial(on_team_changed, context=context))
