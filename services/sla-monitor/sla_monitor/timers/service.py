"""Placeholder SLA: a first response within a fixed time; the SLA issue adds policies and calendars."""

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay import outbox
from leadrelay.calendar import TeamCalendar
from leadrelay.db import insert_unless_taken
from leadrelay.events import EscalationStep, LeadAssigned, SlaBreached, new_event
from leadrelay.stages import SlaState
from sla_monitor.timers.models import REPLACED, SlaTimer

SOURCE = "leadrelay/sla-monitor"
PLACEHOLDER_POLICY_VERSION = "placeholder-1"
FIRST_RESPONSE = "first_response"


async def get_by_assignment(*, session: AsyncSession, assignment_id: str, obligation: str) -> SlaTimer | None:
    """The timer of an assignment's obligation, if any."""
    statement = select(SlaTimer).where(SlaTimer.assignment_id == assignment_id, SlaTimer.obligation == obligation)
    return (await session.exec(statement)).first()


def _new_timer(assignment: LeadAssigned, response_time: timedelta) -> SlaTimer:
    return SlaTimer(
        lead_id=assignment.lead_id,
        assignment_id=assignment.assignment_id,
        obligation=FIRST_RESPONSE,
        rep_id=assignment.rep_id,
        policy_version=PLACEHOLDER_POLICY_VERSION,
        started_at=assignment.assigned_at,
        due_at=assignment.assigned_at + response_time,
        next_at=assignment.assigned_at + response_time,
        within_seconds=response_time.total_seconds(),
    )


async def start_many(
    *, session: AsyncSession, assignments: Sequence[LeadAssigned], response_time: timedelta
) -> list[SlaTimer]:
    """The first-response timers of assignments, existing ones read in one query and new ones inserted together.

    If another replica started one of them meanwhile, the insert fails and each is started on its own.
    """
    ids = list({assignment.assignment_id for assignment in assignments})
    statement = select(SlaTimer).where(col(SlaTimer.assignment_id).in_(ids), SlaTimer.obligation == FIRST_RESPONSE)
    timers = {timer.assignment_id: timer for timer in (await session.exec(statement)).all()}
    new: dict[str, SlaTimer] = {}
    for assignment in assignments:
        if assignment.assignment_id not in timers and assignment.assignment_id not in new:
            new[assignment.assignment_id] = _new_timer(assignment, response_time)
    if new and not await insert_unless_taken(session, new.values()):
        return [
            await start(session=session, assignment=assignment, response_time=response_time)
            for assignment in assignments
        ]
    chosen = timers | new
    return [chosen[assignment.assignment_id] for assignment in assignments]


async def start(*, session: AsyncSession, assignment: LeadAssigned, response_time: timedelta) -> SlaTimer:
    """The first-response timer of an assignment: the existing one, or a new one."""
    existing = await get_by_assignment(
        session=session, assignment_id=assignment.assignment_id, obligation=FIRST_RESPONSE
    )
    if existing is not None:
        return existing
    timer = _new_timer(assignment, response_time)
    if not await insert_unless_taken(session, [timer]):
        winner = await get_by_assignment(
            session=session, assignment_id=assignment.assignment_id, obligation=FIRST_RESPONSE
        )
        assert winner is not None
        return winner
    return timer


async def close_replaced(*, session: AsyncSession, lead_id: str, assignment_id: str, assigned_at: datetime) -> int:
    """Close the lead's open timers of assignments made before this one (a reassignment replaced them); how many.

    Timers started later are left alone, so a redelivered older reassignment closes nothing newer.
    """
    statement = (
        select(SlaTimer)
        .where(
            SlaTimer.lead_id == lead_id,
            SlaTimer.assignment_id != assignment_id,
            col(SlaTimer.status).in_([SlaState.RUNNING, SlaState.WARNING]),
            col(SlaTimer.started_at) < assigned_at,
        )
        .with_for_update()  # a replica breaching one of them at once goes first or finds it closed
    )
    timers = list((await session.exec(statement)).all())
    for timer in timers:
        timer.status, timer.closed_at = REPLACED, assigned_at
        session.add(timer)
    return len(timers)


async def claim_due(*, session: AsyncSession, now: datetime, limit: int = 500) -> list[SlaTimer]:
    """Running timers past their deadline, locked so two replicas never breach the same one."""
    statement = (
        select(SlaTimer)
        .where(SlaTimer.status == SlaState.RUNNING, col(SlaTimer.due_at) <= now)
        .order_by(col(SlaTimer.due_at))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await session.exec(statement)).all())


async def breach_due(
    *, session: AsyncSession, now: datetime, limit: int = 500, escalation: Sequence[EscalationStep] = ()
) -> int:
    """Close up to `limit` due timers as breached and stage sla.breached (with `escalation`) for each; how many."""
    timers = await claim_due(session=session, now=now, limit=limit)
    for timer in timers:
        timer.status, timer.closed_at = SlaState.BREACHED, now
        session.add(timer)
        breached = SlaBreached(
            lead_id=timer.lead_id,
            obligation=timer.obligation,
            assignment_id=timer.assignment_id,
            rep_id=timer.rep_id,
            due_at=timer.due_at,
            breached_at=now,
            escalation=list(escalation),
        )
        outbox.add(session, new_event(breached, source=SOURCE))
    return len(timers)


async def reschedule_team(*, session: AsyncSession, team_id: str, calendar: TeamCalendar, now: datetime) -> int:
    """Move the deadlines of the team's open business-clock timers onto its new calendar; how many moved."""
    return 0  # issue 10: timers helper
