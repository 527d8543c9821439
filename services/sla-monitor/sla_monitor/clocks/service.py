"""Business clocks: a team's calendar (or 24/7), deadlines and elapsed business seconds on it."""

from datetime import datetime, timedelta

from sqlalchemy import bindparam
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.calendar import TeamCalendar
from leadrelay.db import insert_unless_taken
from leadrelay.events import SlaClock, TeamChanged
from sla_monitor.clocks.models import TeamCalendarRecord


def calendar_of(record: TeamCalendarRecord) -> TeamCalendar:
    """The business calendar of a stored team."""
    return TeamCalendar.from_payload(
        timezone=record.timezone, working_hours=record.working_hours, holiday_calendar=record.holidays
    )


async def get(*, session: AsyncSession, team_id: str) -> TeamCalendarRecord | None:
    """A team's stored calendar, if router announced it."""
    return await session.get(TeamCalendarRecord, team_id)


async def store(*, session: AsyncSession, team: TeamChanged) -> TeamCalendarRecord | None:
    """Keep a team.changed unless a later version is stored; the record if it changed anything, else None.

    A redelivered or older version (lower or equal) changes nothing: the highest version wins.
    """
    record = await get(session=session, team_id=team.team_id)
    if record is None:
        record = TeamCalendarRecord(
            team_id=team.team_id, version=team.version, timezone=team.timezone, changed_at=team.changed_at
        )
        _copy(team, record)
        if await insert_unless_taken(session, [record]):
            return record
        # Another replica stored this team meanwhile: compare with what it stored.
        record = await get(session=session, team_id=team.team_id)
        assert record is not None
    if team.version <= record.version:
        return None
    _copy(team, record)
    session.add(record)
    return record


def _copy(team: TeamChanged, record: TeamCalendarRecord) -> None:
    record.version, record.timezone, record.changed_at = team.version, team.timezone, team.changed_at
    record.working_hours = {day: [i.model_dump() for i in intervals] for day, intervals in team.working_hours.items()}
    record.holidays = team.holidays.model_dump() if team.holidays is not None else None
    record.manager_rep_id = team.manager_rep_id


class Clocks:
    """This process's team calendars, by team id and version (a calendar is rebuilt only when its team changes)."""

    def __init__(self) -> None:
        self._calendars: dict[str, tuple[int, TeamCalendar]] = {}

    async def calendar(self, session: AsyncSession, team_id: str | None) -> TeamCalendar | None:
        """The team's business calendar; None when the team is unknown here (its clock then runs 24/7)."""
        if team_id is None:
            return None
        # The version says whether the calendar built before is current: the whole record (hours and holidays
        # as JSON) is read only when it is not.
        version = (await session.exec(_VERSION, params={"team_id": team_id})).first()
        if version is None:
            return None
        cached = self._calendars.get(team_id)
        if cached is None or cached[0] != version:
            record = await get(session=session, team_id=team_id)
            if record is None:
                return None
            cached = self._calendars[team_id] = (record.version, calendar_of(record))
        return cached[1]


_VERSION = select(TeamCalendarRecord.version).where(col(TeamCalendarRecord.team_id) == bindparam("team_id"))


def deadline(*, clock: SlaClock, calendar: TeamCalendar | None, start: datetime, seconds: float) -> datetime:
    """The instant `seconds` of the clock after `start` (a business clock without a calendar runs 24/7)."""
    if clock is SlaClock.WALL or calendar is None:
        return start + timedelta(seconds=seconds)
    end = calendar.add_business_seconds(start, seconds)
    # A calendar that never opens within its scan horizon: the window runs on the wall clock instead.
    return end if end is not None else start + timedelta(seconds=seconds)


def elapsed(*, calendar: TeamCalendar | None, start: datetime, end: datetime) -> tuple[float, float]:
    """Wall seconds and business seconds on the team's calendar from `start` to `end` (business = wall without one)."""
    wall = max((end - start).total_seconds(), 0.0)
    if calendar is None:
        return wall, wall
    return wall, calendar.business_seconds_between(start, end)
