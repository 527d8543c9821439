"""Events the timers consume: assignments start obligations, reassignments replace them, activities meet them."""

from collections.abc import Iterable, Sequence

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.calendar import TeamCalendar
from leadrelay.consumer import Handlers
from leadrelay.db import after_commit
from leadrelay.events import CloudEvent, LeadActivity, LeadAssigned, LeadQueued, SlaClock, utcnow
from sla_monitor.clocks.models import TeamCalendarRecord
from sla_monitor.context import SlaContext
from sla_monitor.metrics import NONE
from sla_monitor.policy.service import ObligationTerms
from sla_monitor.timers import service
from sla_monitor.timers.models import SlaTimer
from sla_monitor.timers.service import Changes


class TeamCalendars:
    """The team calendars of one transaction, each read once."""

    def __init__(self, context: SlaContext, session: AsyncSession) -> None:
        self._context, self._session = context, session
        self._known: dict[str | None, TeamCalendar | None] = {}

    async def __call__(self, team_id: str | None, /) -> TeamCalendar | None:
        """A team's business calendar (None: unknown here, its clock runs 24/7)."""
        if team_id not in self._known:
            self._known[team_id] = await self._context.clocks.calendar(self._session, team_id)
        return self._known[team_id]

    async def load(self, team_ids: Iterable[str | None], /) -> None:
        """Read the teams' stored calendars in one query (the session then has them)."""
        wanted = {team_id for team_id in team_ids if team_id is not None and team_id not in self._known}
        if not wanted:
            return
        statement = select(TeamCalendarRecord.team_id).where(col(TeamCalendarRecord.team_id).in_(wanted))
        stored = set((await self._session.exec(statement)).all())
        for team_id in wanted - stored:
            self._known[team_id] = None
        for team_id in stored:
            await self(team_id)


def calendars(context: SlaContext, session: AsyncSession) -> TeamCalendars:
    """The team calendars of this transaction, each read once."""
    return TeamCalendars(context, session)


def _labels(timer: SlaTimer) -> dict[str, str]:
    return _labels_of(team_id=timer.team_id, obligation=timer.obligation, grade=timer.grade)


def _labels_of(*, team_id: str | None, obligation: str, grade: str | None) -> dict[str, str]:
    return {"team": team_id or NONE, "obligation": obligation, "grade": grade or NONE}


def count_after_commit(context: SlaContext, session: AsyncSession, changes: Changes) -> None:
    """Once the transaction commits: count what it did and wake the timer job if it set a sooner instant."""
    if not changes and changes.soonest is None:
        return

    def committed() -> None:
        metrics, now = context.metrics, utcnow()
        for row in changes.started:
            labels = _labels_of(team_id=row["team_id"], obligation=row["obligation"], grade=row["grade"])
            metrics.started_total.labels(**labels).inc()
            # The outcomes' series exist from the start at 0, so a rate over them sees the first one.
            for outcome in (metrics.warnings_total, metrics.breaches_total, metrics.met_total):
                outcome.labels(**labels)
        for timer, instant in changes.warned:
            metrics.warnings_total.labels(**_labels(timer)).inc()
            metrics.fire_lateness_seconds.labels(event="warning").observe(max((now - instant).total_seconds(), 0.0))
        for timer, instant in changes.breached:
            metrics.breaches_total.labels(**_labels(timer)).inc()
            metrics.fire_lateness_seconds.labels(event="breached").observe(max((now - instant).total_seconds(), 0.0))
        for timer in changes.met:
            metrics.met_total.labels(**_labels(timer)).inc()
        for timer, reason in changes.cancelled:
            metrics.cancelled_total.labels(obligation=timer.obligation, reason=reason).inc()
        for timer in changes.responded:
            team = timer.team_id or NONE
            if timer.response_seconds is not None:
                metrics.response_seconds.labels(team=team, obligation=timer.obligation).observe(timer.response_seconds)
            if timer.response_business_seconds is not None:
                metrics.response_business_seconds.labels(team=team, obligation=timer.obligation).observe(
                    timer.response_business_seconds
                )

    after_commit(session, committed)
    if changes.soonest is not None:
        context.wake.on_commit(session, changes.soonest, max_sleep_seconds=context.settings.timer_max_sleep_seconds)


async def on_lead_assigned(
    events: Sequence[CloudEvent[LeadAssigned]], session: AsyncSession, *, context: SlaContext
) -> None:
    """Start each assignment's obligations under the policy in force; a reassignment first replaces the older ones."""
    policy = await context.policies.active(session)
    calendar_of = calendars(context, session)
    changes = Changes()
    run: list[tuple[LeadAssigned, Sequence[ObligationTerms], TeamCalendar | None, dict[str, SlaTimer]]] = []
    for event in events:
        assignment = event.data
        replaced: dict[str, SlaTimer] = {}
        if assignment.sequence > 1:
            # In order: of two reassignments of a lead in one run, the later one replaces the earlier one's timers.
            await service.start(session=session, assignments=run, changes=changes)
            run = []
            replaced = await service.replace_older(
                session=session,
                lead_id=assignment.lead_id,
                sequence=assignment.sequence,
                at=assignment.assigned_at,
                calendar_of=calendar_of,
                changes=changes,
            )
        terms = policy.terms_for(grade=assignment.grade, source=assignment.source, team_id=assignment.team_id)
        # Only a business clock's deadlines need the team's calendar (the built-in policy runs on the wall clock).
        business = any(term.clock is SlaClock.BUSINESS for term in terms)
        run.append((assignment, terms, await calendar_of(assignment.team_id) if business else None, replaced))
    await service.start(session=session, assignments=run, changes=changes)
    count_after_commit(context, session, changes)


async def on_lead_queued(
    events: Sequence[CloudEvent[LeadQueued]], session: AsyncSession, *, context: SlaContext
) -> None:
    """A reassignment to a team's queue replaces the older assignment's timers (a queue starts none)."""
    calendar_of = calendars(context, session)
    changes = Changes()
    for event in events:
        queued = event.data
        if queued.sequence > 1:
            await service.replace_older(
                session=session,
                lead_id=queued.lead_id,
                sequence=queued.sequence,
                at=queued.queued_at,
                calendar_of=calendar_of,
                changes=changes,
            )
    count_after_commit(context, session, changes)


async def on_lead_activity(
    events: Sequence[CloudEvent[LeadActivity]], session: AsyncSession, *, context: SlaContext
) -> None:
    """Meet, record late responses to, or cancel (stage left) the lead's obligations."""
    calendar_of = calendars(context, session)
    changes = Changes()
    activities = [event.data for event in events]
    await service.record_activities(session=session, activities=activities, calendar_of=calendar_of, changes=changes)
    count_after_commit(context, session, changes)


def handlers(context: SlaContext) -> Handlers:
    """Message type to handler, bound to this process's context; runs of events are handled at once."""

    async def assigned(events: Sequence[CloudEvent[LeadAssigned]], session: AsyncSession) -> None:
        await on_lead_assigned(events, session, context=context)

    async def queued(events: Sequence[CloudEvent[LeadQueued]], session: AsyncSession) -> None:
        await on_lead_queued(events, session, context=context)

    async def activity(events: Sequence[CloudEvent[LeadActivity]], session: AsyncSession) -> None:
        await on_lead_activity(events, session, context=context)

    return Handlers().on_batch(LeadAssigned, assigned).on_batch(LeadQueued, queued).on_batch(LeadActivity, activity)
