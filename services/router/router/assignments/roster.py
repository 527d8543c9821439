"""Reading the roster (reps, teams, recent loads) for a run of routing decisions, and counting leads given."""

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.calendar import TeamCalendar
from leadrelay.db import per_dialect
from router.assignments.models import RepLoad
from router.assignments.routing import LOAD_DAYS, Roster
from router.reps.models import Rep
from router.teams.models import Team
from router.teams.service import calendar


class RosterCache:
    """Reps and teams kept between batches, read again whenever any changed (on any replica).

    A change is seen from the count and the latest `updated_at` of each table: one cheap read a
    batch instead of every rep, which matters with thousands of reps.
    """

    def __init__(self) -> None:
        self._fingerprint: tuple[object, ...] | None = None
        self._reps: dict[str, Rep] = {}
        self._teams: dict[str, Team] = {}
        self._calendars: dict[str, TeamCalendar] = {}

    async def load(self, session: AsyncSession, *, at: datetime) -> Roster:
        """The roster now, with every rep's leads per day over the last LOAD_DAYS days (read fresh)."""
        fingerprint = tuple((await session.exec(_FINGERPRINT)).one())
        if fingerprint != self._fingerprint:
            self._reps = {rep.id: rep for rep in (await session.exec(select(Rep))).all()}
            self._teams = {team.id: team for team in (await session.exec(select(Team))).all()}
            self._calendars = {team_id: calendar(team) for team_id, team in self._teams.items()}
            self._fingerprint = fingerprint
        return await roster_of(session, reps=self._reps.values(), teams=self._teams.values(),
                               calendars=self._calendars, at=at)  # fmt: skip


_FINGERPRINT = select(
    select(func.count()).select_from(Rep).scalar_subquery(),
    select(func.max(Rep.updated_at)).scalar_subquery(),
    select(func.count()).select_from(Team).scalar_subquery(),
    select(func.max(Team.updated_at)).scalar_subquery(),
)
"""Both tables' counts and latest changes, in one statement."""


async def roster_of(
    session: AsyncSession,
    *,
    reps: Iterable[Rep],
    teams: Iterable[Team],
    at: datetime,
    calendars: dict[str, TeamCalendar] | None = None,
) -> Roster:
    """A roster of these reps and teams, with the leads given per day from LOAD_DAYS + 1 days before `at` on."""
    rep_rows = {rep.id: rep for rep in reps}
    team_rows = {team.id: team for team in teams}
    members: dict[str, list[str]] = defaultdict(list)
    for rep_id in sorted(rep_rows):
        for team_id in rep_rows[rep_id].teams:
            members[team_id].append(rep_id)
    daily: dict[str, dict[date, int]] = defaultdict(dict)
    since = (at - timedelta(days=LOAD_DAYS + 1)).date()
    for row in (await session.exec(_LOADS_SINCE, params={"since": since})).all():
        daily[row.rep_id][row.day] = row.assigned
    return Roster(
        reps=rep_rows,
        calendars=calendars if calendars is not None else {key: calendar(team) for key, team in team_rows.items()},
        members=dict(members),
        managers={team_id: team.manager_rep_id for team_id, team in team_rows.items()},
        daily=dict(daily),
    )


_LOADS_SINCE = select(RepLoad).where(col(RepLoad.day) >= bindparam("since"))


async def count_given(session: AsyncSession, *, rep_id: str, day: date) -> None:
    """One more lead given to the rep on its local `day` (safe when replicas count at once)."""
    await count_many(session, given={(rep_id, day): 1})


async def count_many(session: AsyncSession, *, given: Mapping[tuple[str, date], int]) -> None:
    """Leads given per (rep, local day), added to the stored counts in one statement."""
    if not given:
        return
    rows = [{"rep_id": rep_id, "day": day, "assigned": count} for (rep_id, day), count in sorted(given.items())]
    connection = await session.connection()
    await connection.execute(_COUNT[connection.dialect.name], rows)


def _count(dialect: Any) -> Any:
    statement = dialect.insert(RepLoad)
    return statement.on_conflict_do_update(
        index_elements=[col(RepLoad.rep_id), col(RepLoad.day)],
        set_={"assigned": RepLoad.assigned + statement.excluded.assigned},
    )


# Built once and run with the rows as parameters (in key order, so replicas lock rows in one order).
_COUNT = per_dialect(_count)
