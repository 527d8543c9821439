"""SLA timers: started per obligation of an assignment, carried over or replaced on reassignment, met, cancelled,
warned and breached; every change stages its sla.* event with an id that is the same however often it happens."""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID, uuid5

from sqlalchemy import bindparam, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay import outbox
from leadrelay.agreements import service as agreements
from leadrelay.calendar import TeamCalendar
from leadrelay.db import after_commit, new_row, per_dialect
from leadrelay.events import (
    EscalationStep,
    LeadActivity,
    LeadAssigned,
    SlaBreached,
    SlaCancelled,
    SlaClock,
    SlaEventData,
    SlaMet,
    SlaStarted,
    SlaWarning,
    new_event,
)
from leadrelay.stages import SlaState
from sla_monitor.clocks.service import deadline, elapsed
from sla_monitor.policy.document import SLA, SlaDocument
from sla_monitor.policy.service import KEEP, ObligationTerms
from sla_monitor.timers.models import OPEN_STATES, REPLACED, SlaTimer
from sla_monitor.timers.wake import TimerWake

SOURCE = "leadrelay/sla-monitor"
EVENT_NAMESPACE = UUID("7f0c2d4e-5b1a-4c8e-9a35-51a7e0d2c6b1")
"""Namespace of the sla.* event ids: `uuid5(EVENT_NAMESPACE, "<timer id>:<kind>")`, so each fires once as an id."""
REASSIGNED = "reassigned"
STAGE_LEFT = "stage_left"


class CalendarOf(Protocol):
    """Teams' business calendars for one transaction."""

    async def __call__(self, team_id: str | None, /) -> TeamCalendar | None:
        """A team's business calendar by team id (None: the clock runs 24/7)."""

    async def load(self, team_ids: Iterable[str | None], /) -> None:
        """Read these teams' calendars at once (the calls that follow read none)."""


def event_id(timer_id: str, kind: str) -> str:
    """The id of a timer's `kind` event (started, warning, breached, met, cancelled): one per timer and kind."""
    return str(uuid5(EVENT_NAMESPACE, f"{timer_id}:{kind}"))


@dataclass
class Changes:
    """What a transaction did to timers, counted in metrics once it commits; `soonest` is the next instant it set."""

    started: list[dict[str, Any]] = field(default_factory=list)
    """The rows of the timers started."""
    warned: list[tuple[SlaTimer, datetime]] = field(default_factory=list)
    """Each warned timer with the instant it was due to warn at."""
    breached: list[tuple[SlaTimer, datetime]] = field(default_factory=list)
    met: list[SlaTimer] = field(default_factory=list)
    cancelled: list[tuple[SlaTimer, str]] = field(default_factory=list)
    responded: list[SlaTimer] = field(default_factory=list)
    """Timers whose response was recorded (met in time or late)."""
    soonest: datetime | None = None

    def schedule(self, at: datetime | None) -> None:
        """Remember `at` if it is the soonest instant set so far."""
        if at is not None and (self.soonest is None or at < self.soonest):
            self.soonest = at

    def __bool__(self) -> bool:
        return bool(self.started or self.warned or self.breached or self.met or self.cancelled or self.responded)


_CARRIED = ("lead_id", "obligation", "assignment_id", "rep_id", "team_id", "grade", "source", "policy_version")
"""The timer's values every sla.* event carries as they are (with its clock and deadline)."""


def _event_fields(timer: SlaTimer, *, calendar: TeamCalendar | None, at: datetime) -> dict[str, Any]:
    wall, business = elapsed(calendar=calendar, start=timer.started_at, end=at)
    carried = {name: getattr(timer, name) for name in _CARRIED}
    return {
        **carried,
        "clock": SlaClock(timer.clock),
        "due_at": timer.due_at,
        "elapsed_seconds": wall,
        "elapsed_business_seconds": business,
    }


def _started(row: dict[str, Any]) -> SlaStarted:
    """A new timer's sla.started, from its row (nothing has elapsed yet)."""
    return SlaStarted(
        **{name: row[name] for name in _CARRIED},
        clock=SlaClock(row["clock"]),
        due_at=row["due_at"],
        elapsed_seconds=0.0,
        elapsed_business_seconds=0.0,
        started_at=row["started_at"],
        warn_at=row["warn_at"],
        within_seconds=row["within_seconds"],
    )


def _publish(session: AsyncSession, timer_id: str, kind: str, data: SlaEventData) -> None:
    outbox.add(session, new_event(data, source=SOURCE, event_id=event_id(timer_id, kind)))


def _next_at(timer: SlaTimer) -> datetime:
    return _first_instant(status=timer.status, warn_at=timer.warn_at, due_at=timer.due_at)


def _first_instant(*, status: str, warn_at: datetime | None, due_at: datetime) -> datetime:
    if status == SlaState.RUNNING and warn_at is not None and warn_at < due_at:
        return warn_at
    return due_at


def _new_timer(
    assignment: LeadAssigned, terms: ObligationTerms, calendar: TeamCalendar | None, kept: SlaTimer | None
) -> dict[str, Any]:
    """A new timer's row: plain values for a Core insert (building an SlaTimer costs more than inserting it)."""
    if kept is not None:
        # `keep`: the deadline carries over from the replaced timer, warning sent or not.
        clock, within_seconds, started_at = kept.clock, kept.within_seconds, kept.started_at
        warn_at, due_at, warned_at = kept.warn_at, kept.due_at, kept.warned_at
        status = SlaState.RUNNING if kept.warned_at is None else SlaState.WARNING
    else:
        clock, within_seconds, started_at = terms.clock, terms.within_seconds, assignment.assigned_at
        warn_at, due_at = _deadlines(
            clock=terms.clock, calendar=calendar, start=started_at, seconds=within_seconds, warn_share=terms.warn_at
        )
        warned_at, status = None, SlaState.RUNNING
    return new_row(
        SlaTimer,
        lead_id=assignment.lead_id,
        assignment_id=assignment.assignment_id,
        sequence=assignment.sequence,
        obligation=terms.obligation,
        rep_id=assignment.rep_id,
        team_id=assignment.team_id,
        grade=assignment.grade,
        source=assignment.source,
        policy_version=terms.policy_version,
        clock=clock,
        within_seconds=within_seconds,
        met_by=sorted(terms.met_by),
        stages=sorted(terms.stages),
        escalation=list(terms.escalation),
        started_at=started_at,
        warn_at=warn_at,
        due_at=due_at,
        next_at=_first_instant(status=status, warn_at=warn_at, due_at=due_at),
        status=status,
        warned_at=warned_at,
    )


def _schedule(timer: SlaTimer, calendar: TeamCalendar | None, warn_share: float | None) -> None:
    timer.warn_at, timer.due_at = _deadlines(
        clock=SlaClock(timer.clock),
        calendar=calendar,
        start=timer.started_at,
        seconds=timer.within_seconds,
        warn_share=warn_share,
    )


def _deadlines(
    *, clock: SlaClock, calendar: TeamCalendar | None, start: datetime, seconds: float, warn_share: float | None
) -> tuple[datetime | None, datetime]:
    """The warning instant (None without a warning share) and the deadline of a window from `start`."""
    due_at = deadline(clock=clock, calendar=calendar, start=start, seconds=seconds)
    if warn_share is None:
        return None, due_at
    return deadline(clock=clock, calendar=calendar, start=start, seconds=seconds * warn_share), due_at


async def replace_older(
    *, session: AsyncSession, lead_id: str, sequence: int, at: datetime, calendar_of: CalendarOf, changes: Changes
) -> dict[str, SlaTimer]:
    """Close the lead's open timers of assignments older than `sequence` as replaced (sla.cancelled `reassigned`).

    Returns the closed timers by obligation (the ones a `keep` obligation carries over). Timers of a newer
    assignment are left alone, so a redelivered older reassignment closes nothing newer.
    """
    statement = (
        select(SlaTimer)
        .where(
            SlaTimer.lead_id == lead_id,
            col(SlaTimer.status).in_(OPEN_STATES),
            col(SlaTimer.sequence) < sequence,
        )
        .order_by(col(SlaTimer.sequence))
        .with_for_update()  # a replica firing one of them at once goes first, or finds it closed
    )
    replaced: dict[str, SlaTimer] = {}
    for timer in (await session.exec(statement)).all():
        _cancel(session, timer, reason=REASSIGNED, at=at, calendar=await calendar_of(timer.team_id))
        timer.status = REPLACED
        changes.cancelled.append((timer, REASSIGNED))
        replaced[timer.obligation] = timer
    return replaced


def _cancel(
    session: AsyncSession, timer: SlaTimer, *, reason: str, at: datetime, calendar: TeamCalendar | None
) -> None:
    timer.status, timer.closed_at, timer.close_reason, timer.next_at = SlaState.CANCELLED, at, reason, None
    session.add(timer)
    cancelled = SlaCancelled(**_event_fields(timer, calendar=calendar, at=at), cancelled_at=at, reason=reason)
    _publish(session, timer.id, "cancelled", cancelled)


async def start(
    *,
    session: AsyncSession,
    assignments: Sequence[tuple[LeadAssigned, Sequence[ObligationTerms], TeamCalendar | None, dict[str, SlaTimer]]],
    changes: Changes,
) -> list[dict[str, Any]]:
    """Start each assignment's obligations (terms, team calendar, replaced timers by obligation) and stage sla.started.

    Obligations already started (a redelivery, or another replica, committed or not) are skipped: one insert
    adds the others and says which it added. Returns the rows of the timers started here.
    """
    new: dict[tuple[str, str], dict[str, Any]] = {}
    for assignment, terms_list, calendar, replaced in assignments:
        for terms in terms_list:
            key = (assignment.assignment_id, terms.obligation)
            if key not in new:
                kept = replaced.get(terms.obligation) if terms.on_reassignment == KEEP else None
                new[key] = _new_timer(assignment, terms, calendar, kept)
    if not new:
        return []
    connection = await session.connection()
    statement = _START_UNLESS_STARTED[connection.dialect.name]
    inserted = set((await connection.execute(statement, list(new.values()))).scalars())
    timers = [row for row in new.values() if row["id"] in inserted]
    for row in timers:
        _publish(session, row["id"], "started", _started(row))
        changes.started.append(row)
        changes.schedule(row["next_at"])
    started_before = {key for key, row in new.items() if row["id"] not in inserted}
    if started_before:
        await _announce_again(session, keys=started_before)
    return timers


async def _announce_again(session: AsyncSession, *, keys: set[tuple[str, str]]) -> None:
    """Stage sla.started again, under its first id, for obligations started before.

    The router announces an assignment again when intake re-drives a lead whose events a broker
    lost, and this sla.started may have been lost with them. Consumers that had it drop the copy
    by its id; the others get it.
    """
    statement = (
        select(SlaTimer)
        .where(col(SlaTimer.assignment_id).in_(list({assignment for assignment, _ in keys})))
        .order_by(col(SlaTimer.assignment_id), col(SlaTimer.obligation))
    )
    for timer in (await session.exec(statement)).all():
        if (timer.assignment_id, timer.obligation) in keys:
            started = SlaStarted(
                **_event_fields(timer, calendar=None, at=timer.started_at),
                started_at=timer.started_at,
                warn_at=timer.warn_at,
                within_seconds=timer.within_seconds,
            )
            _publish(session, timer.id, "started", started)


# Built once: a statement with its values inline would be compiled (and cache-keyed) anew per call.
_START_UNLESS_STARTED = per_dialect(
    lambda dialect: (
        dialect.insert(SlaTimer)
        .on_conflict_do_nothing(index_elements=[col(SlaTimer.assignment_id), col(SlaTimer.obligation)])
        .returning(col(SlaTimer.id))
    )
)


_ANSWERABLE = (*OPEN_STATES, SlaState.BREACHED)
"""The states an activity can still change: a breached timer still records the first response."""

# Built once, for any number of leads (an expanding IN).
_ANSWERABLE_TIMERS = (
    select(SlaTimer)
    .where(
        col(SlaTimer.lead_id).in_(bindparam("lead_ids", expanding=True)),
        col(SlaTimer.status).in_(_ANSWERABLE),
    )
    .order_by(col(SlaTimer.lead_id), col(SlaTimer.sequence), col(SlaTimer.obligation))
    .with_for_update()  # the job breaching one of them at once goes first, or finds it met
)


async def record_activities(
    *, session: AsyncSession, activities: Sequence[LeadActivity], calendar_of: CalendarOf, changes: Changes
) -> None:
    """Meet, record late responses to, or cancel (stage left) the leads' obligations, one activity after another.

    A matching activity by the deadline meets an open obligation; after it, or on a breached one, it only
    records the response. Then the open ones whose stages the lead left are cancelled. Duplicates change nothing,
    and nothing started after the activity occurred.
    """
    answering = [activity for activity in activities if not activity.activity.is_engagement]
    if not answering:
        return  # marketing engagement meets nothing and moves no stage
    # One query for the whole run instead of one per activity.
    lead_ids = list({activity.lead_id for activity in answering})
    timers_of: dict[str, list[SlaTimer]] = defaultdict(list)
    for timer in (await session.exec(_ANSWERABLE_TIMERS, params={"lead_ids": lead_ids})).all():
        timers_of[timer.lead_id].append(timer)
    for activity in answering:
        await _record_activity(
            session, activity=activity, timers=timers_of[activity.lead_id], calendar_of=calendar_of, changes=changes
        )


async def _record_activity(
    session: AsyncSession,
    *,
    activity: LeadActivity,
    timers: Sequence[SlaTimer],
    calendar_of: CalendarOf,
    changes: Changes,
) -> None:
    at = activity.occurred_at
    for timer in timers:
        if timer.status not in _ANSWERABLE:
            continue  # an earlier activity of this run met or cancelled it
        if at < timer.started_at:
            continue  # it belongs to an earlier assignment (a redelivery after a reassignment restarted this one)
        calendar = await calendar_of(timer.team_id)
        is_open = timer.status in OPEN_STATES
        if activity.activity in timer.met_by and timer.responded_at is None:
            timer.responded_at = at
            timer.response_seconds, timer.response_business_seconds = elapsed(
                calendar=calendar, start=timer.started_at, end=at
            )
            changes.responded.append(timer)
            if is_open and at <= timer.due_at:
                timer.status, timer.closed_at, timer.close_reason, timer.next_at = SlaState.MET, at, None, None
                met = SlaMet(**_event_fields(timer, calendar=calendar, at=at), met_at=at, activity=activity.activity)
                _publish(session, timer.id, "met", met)
                changes.met.append(timer)
                is_open = False
            session.add(timer)
        if is_open and activity.stage is not None and activity.stage not in timer.stages:
            _cancel(session, timer, reason=STAGE_LEFT, at=at, calendar=calendar)
            changes.cancelled.append((timer, STAGE_LEFT))


async def claim_due(*, session: AsyncSession, now: datetime, limit: int) -> list[SlaTimer]:
    """Open timers whose next instant has come, soonest first, locked so two replicas never fire the same one."""
    statement = (
        select(SlaTimer)
        .where(col(SlaTimer.next_at) <= now)
        .order_by(col(SlaTimer.next_at))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await session.exec(statement)).all())


async def fire_due(
    *, session: AsyncSession, now: datetime, limit: int, calendar_of: CalendarOf, changes: Changes
) -> int:
    """Breach the claimed timers whose deadline has come, warn the others; stage their events; how many fired.

    A timer already past its deadline is breached without a warning.
    """
    timers = await claim_due(session=session, now=now, limit=limit)
    await calendar_of.load({timer.team_id for timer in timers})
    for timer in timers:
        calendar = await calendar_of(timer.team_id)
        fields = _event_fields(timer, calendar=calendar, at=now)
        if timer.due_at <= now:
            timer.status, timer.closed_at, timer.next_at = SlaState.BREACHED, now, None
            breached = SlaBreached(
                **fields,
                breached_at=now,
                escalation=[EscalationStep(step) for step in timer.escalation],
            )
            _publish(session, timer.id, "breached", breached)
            changes.breached.append((timer, timer.due_at))
        else:
            instant = timer.next_at or now
            timer.status, timer.warned_at, timer.next_at = SlaState.WARNING, now, timer.due_at
            wall, business = elapsed(calendar=calendar, start=now, end=timer.due_at)
            remaining = business if SlaClock(timer.clock) is SlaClock.BUSINESS else wall
            warning = SlaWarning(**fields, remaining_seconds=remaining, warned_at=now)
            _publish(session, timer.id, "warning", warning)
            changes.warned.append((timer, instant))
            changes.schedule(timer.due_at)
        session.add(timer)
    return len(timers)


async def next_instant(*, session: AsyncSession) -> datetime | None:
    """The soonest instant an open timer must be acted on, if any."""
    result: datetime | None = (await session.exec(select(func.min(SlaTimer.next_at)))).one()
    return result


async def reschedule_team(
    *, session: AsyncSession, team_id: str, calendar: TeamCalendar, now: datetime, wake: TimerWake | None = None
) -> int:
    """Move the deadlines of the team's open business-clock timers onto its new calendar; how many moved.

    Windows are recomputed from each timer's start; a warning already sent is not sent again. Pass the
    context's `wake` so the timer job wakes after the commit if an instant came sooner.
    """
    statement = (
        select(SlaTimer)
        .where(
            SlaTimer.team_id == team_id,
            SlaTimer.clock == SlaClock.BUSINESS,
            col(SlaTimer.status).in_(OPEN_STATES),
        )
        .with_for_update()
    )
    timers = list((await session.exec(statement)).all())
    shares = await _warn_shares(session, {timer.policy_version for timer in timers})
    soonest: datetime | None = None
    moved = 0
    for timer in timers:
        before = (timer.warn_at, timer.due_at)
        share = None
        if timer.warn_at is not None:
            # The policy's share; for a version not stored here, the share the old deadlines show.
            window = (timer.due_at - timer.started_at).total_seconds()
            share = shares.get((timer.policy_version, timer.obligation)) or (
                (timer.warn_at - timer.started_at).total_seconds() / window if window > 0 else None
            )
        _schedule(timer, calendar, share)
        if timer.status == SlaState.WARNING:
            timer.warn_at = before[0]  # sent already: only the deadline moves
        timer.next_at = _next_at(timer)
        if (timer.warn_at, timer.due_at) != before:
            moved += 1
            session.add(timer)
            instant = max(timer.next_at, now)
            soonest = instant if soonest is None else min(soonest, instant)
    if wake is not None and soonest is not None:
        at = soonest
        after_commit(session, lambda: wake.sooner(at))
    return moved


async def _warn_shares(session: AsyncSession, versions: set[str]) -> dict[tuple[str, str], float]:
    # Business-clock timers come from signed policies (the built-in one runs on the wall clock).
    shares: dict[tuple[str, str], float] = {}
    for version in versions:
        if not version.isdigit():
            continue
        record = await agreements.get(session, kind=SLA.name, version=int(version))
        if record is None:
            continue
        for obligation in SlaDocument.model_validate(record.version.document).obligations:
            if obligation.warn_at is not None:
                shares[(version, obligation.name)] = obligation.warn_at
    return shares
