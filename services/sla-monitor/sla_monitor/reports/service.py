"""Reading the SLA timers: a lead's obligations, the ones at risk, the compliance report and the gauges' counts."""

import math
from array import array
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, func
from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.stages import SlaState
from sla_monitor.clocks.models import TeamCalendarRecord
from sla_monitor.reports.schemas import GroupBy
from sla_monitor.timers.models import OPEN_STATES, REPLACED, SlaTimer

OPEN = tuple(state.value for state in OPEN_STATES)
CANCELLED = (SlaState.CANCELLED.value, REPLACED)
"""Closed unmet and unbreached: the stage was left, or a reassignment replaced the assignment."""
CLOSED = (SlaState.MET.value, SlaState.BREACHED.value, *CANCELLED)
MAX_REPORT_RESPONSES = 1_000_000
"""Most responses one report reads (16 bytes each in memory): a longer period is refused, not truncated silently."""
PERCENTILES = (0.5, 0.9, 0.99)
_STREAM_CHUNK = 5_000


def remaining_seconds(timer: SlaTimer, *, now: datetime) -> float | None:
    """Wall seconds until an open timer's deadline (0 once it passed); None for a closed one."""
    if timer.status not in OPEN:
        return None
    return max(0.0, (timer.due_at - now).total_seconds())


async def lead_obligations(*, session: AsyncSession, lead_id: str) -> Sequence[SlaTimer]:
    """Every timer of the lead, the newest assignment first."""
    query = (
        select(SlaTimer)
        .where(col(SlaTimer.lead_id) == lead_id)
        .order_by(col(SlaTimer.sequence).desc(), col(SlaTimer.started_at).desc(), col(SlaTimer.obligation))
    )
    return (await session.exec(query)).all()


def _at_risk_conditions(
    *, now: datetime, within_seconds: float, team_id: str | None, obligation: str | None
) -> list[ColumnElement[bool]]:
    horizon = now + timedelta(seconds=within_seconds)
    conditions = [
        col(SlaTimer.status).in_(OPEN),
        or_(col(SlaTimer.status) == SlaState.WARNING.value, col(SlaTimer.due_at) <= horizon),
    ]
    if team_id is not None:
        conditions.append(col(SlaTimer.team_id) == team_id)
    if obligation is not None:
        conditions.append(col(SlaTimer.obligation) == obligation)
    return conditions


async def at_risk(
    *,
    session: AsyncSession,
    now: datetime,
    within_seconds: float,
    team_id: str | None = None,
    obligation: str | None = None,
    limit: int,
) -> Sequence[SlaTimer]:
    """Open timers already warned or due by `now + within_seconds`, the soonest due first, at most `limit`."""
    conditions = _at_risk_conditions(now=now, within_seconds=within_seconds, team_id=team_id, obligation=obligation)
    query = select(SlaTimer).where(*conditions).order_by(col(SlaTimer.due_at), col(SlaTimer.id)).limit(limit)
    return (await session.exec(query)).all()


async def at_risk_by_team(
    *,
    session: AsyncSession,
    now: datetime,
    within_seconds: float,
    team_id: str | None = None,
    obligation: str | None = None,
) -> list[tuple[str | None, int, int, datetime]]:
    """Per team: how many obligations are at risk (all of them, not capped), how many warned, the soonest due."""
    conditions = _at_risk_conditions(now=now, within_seconds=within_seconds, team_id=team_id, obligation=obligation)
    warned = func.sum(case((col(SlaTimer.status) == SlaState.WARNING.value, 1), else_=0))
    query = (
        select(col(SlaTimer.team_id), func.count(), warned, func.min(col(SlaTimer.due_at)))
        .where(*conditions)
        .group_by(col(SlaTimer.team_id))
    )
    rows = [
        (team, int(count), int(warned_count or 0), soonest)
        for team, count, warned_count, soonest in (await session.exec(query)).all()
    ]
    return sorted(rows, key=lambda row: row[3])


def percentiles(values: Sequence[float]) -> tuple[int, list[float | None]]:
    """The count and p50/p90/p99 of `values`, interpolated linearly between closest ranks (as percentile_cont)."""
    # e.g. p90 of 10 sorted values is v[8] + 0.1 * (v[9] - v[8]): the same figure PostgreSQL would give.
    ordered = sorted(values)
    if not ordered:
        return 0, [None for _ in PERCENTILES]
    result: list[float | None] = []
    for share in PERCENTILES:
        rank = share * (len(ordered) - 1)
        low, high = math.floor(rank), math.ceil(rank)
        result.append(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))
    return len(ordered), result


@dataclass
class Tally:
    """What a report counts for one group (or for all)."""

    met: int = 0
    breached: int = 0
    cancelled: int = 0
    response_seconds: "array[float]" = field(default_factory=lambda: array("d"))
    response_business_seconds: "array[float]" = field(default_factory=lambda: array("d"))

    @property
    def compliance(self) -> float | None:
        """met / (met + breached); None when both are 0."""
        judged = self.met + self.breached
        return self.met / judged if judged else None


@dataclass
class Report:
    """A report's tallies by group key (None: no team), and over all groups."""

    groups: dict[str | None, Tally]
    total: Tally


class TooManyResponses(Exception):
    """The period holds more responses than one report reads."""


def _group_column(group_by: GroupBy) -> Any:
    columns = {GroupBy.TEAM: SlaTimer.team_id, GroupBy.REP: SlaTimer.rep_id, GroupBy.OBLIGATION: SlaTimer.obligation}
    return col(columns[group_by])


async def report(
    *, session: AsyncSession, start: datetime, end: datetime, group_by: GroupBy, team_id: str | None = None
) -> Report:
    """Closures in [start, end) counted in SQL; its responses streamed (bounded) for percentiles in Python."""
    # Percentiles in Python because SQLite has no percentile_cont; both databases then give the same figures.
    group = _group_column(group_by)
    groups: defaultdict[str | None, Tally] = defaultdict(Tally)
    total = Tally()
    counts = select(group, col(SlaTimer.status), func.count()).where(
        col(SlaTimer.closed_at) >= start, col(SlaTimer.closed_at) < end, col(SlaTimer.status).in_(CLOSED)
    )
    if team_id is not None:
        counts = counts.where(col(SlaTimer.team_id) == team_id)
    for key, status, count in (await session.exec(counts.group_by(group, col(SlaTimer.status)))).all():
        for tally in (groups[key], total):
            if status == SlaState.MET.value:
                tally.met += count
            elif status == SlaState.BREACHED.value:
                tally.breached += count
            else:
                tally.cancelled += count
    responses = select(group, col(SlaTimer.response_seconds), col(SlaTimer.response_business_seconds)).where(
        col(SlaTimer.responded_at) >= start,
        col(SlaTimer.responded_at) < end,
        col(SlaTimer.response_seconds).is_not(None),
    )
    if team_id is not None:
        responses = responses.where(col(SlaTimer.team_id) == team_id)
    read = 0
    stream = await session.stream(responses.execution_options(yield_per=_STREAM_CHUNK))
    async for key, wall, business in stream:
        read += 1
        if read > MAX_REPORT_RESPONSES:
            await stream.close()
            raise TooManyResponses
        for tally in (groups[key], total):
            tally.response_seconds.append(wall)
            if business is not None:
                tally.response_business_seconds.append(business)
    return Report(groups=dict(groups), total=total)


async def open_counts(*, session: AsyncSession) -> dict[tuple[str | None, str], int]:
    """Open (running or warned) timers by owning team and obligation."""
    query = (
        select(col(SlaTimer.team_id), col(SlaTimer.obligation), func.count())
        .where(col(SlaTimer.status).in_(OPEN))
        .group_by(col(SlaTimer.team_id), col(SlaTimer.obligation))
    )
    return {(team, obligation): count for team, obligation, count in (await session.exec(query)).all()}


async def known_teams(*, session: AsyncSession) -> list[str]:
    """The teams whose calendars router announced."""
    return list((await session.exec(select(TeamCalendarRecord.team_id))).all())


async def warned_counts(*, session: AsyncSession) -> dict[str | None, int]:
    """Open timers already warned, by owning team."""
    query = (
        select(col(SlaTimer.team_id), func.count())
        .where(col(SlaTimer.status) == SlaState.WARNING.value)
        .group_by(col(SlaTimer.team_id))
    )
    return {team: count for team, count in (await session.exec(query)).all()}
