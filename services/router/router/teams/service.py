"""Team logic: store a team, announce its calendar (team.changed) only when it really changed."""

from dataclasses import dataclass
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay import audit, outbox
from leadrelay.apikeys import ApiKey
from leadrelay.calendar import TeamCalendar
from leadrelay.db import begin_writing, insert_unless_taken
from leadrelay.events import HolidayCalendar, TeamChanged, new_event, utcnow
from router.teams.models import Team
from router.teams.schemas import TeamPublic, TeamPut

SOURCE = "leadrelay/router"


@dataclass(frozen=True)
class Stored:
    """A team after a PUT, whether it was new, and whether it changed (and so was announced)."""

    team: Team
    created: bool
    changed: bool


def _fields(team_in: TeamPut) -> dict[str, Any]:
    return {
        "name": team_in.name,
        "timezone": team_in.timezone,
        "working_hours": {
            day.value: [interval.model_dump() for interval in intervals]
            for day, intervals in team_in.working_hours.items()
            if intervals
        },
        "holiday_country": team_in.holidays.country if team_in.holidays else None,
        "holiday_subdivision": team_in.holidays.subdivision if team_in.holidays else None,
        "manager_rep_id": team_in.manager_rep_id,
    }


def announcement(team: Team) -> TeamChanged:
    """The team's whole state as team.changed carries it."""
    holidays = (
        HolidayCalendar(country=team.holiday_country, subdivision=team.holiday_subdivision)
        if team.holiday_country
        else None
    )
    return TeamChanged.model_validate(
        {
            "team_id": team.id,
            "name": team.name,
            "timezone": team.timezone,
            "working_hours": team.working_hours,
            "holidays": holidays,
            "manager_rep_id": team.manager_rep_id,
            "version": team.version,
            "changed_at": team.updated_at,
        }
    )


def calendar(team: Team) -> TeamCalendar:
    """The team's business calendar."""
    holidays = {"country": team.holiday_country, "subdivision": team.holiday_subdivision}
    return TeamCalendar.from_payload(
        timezone=team.timezone,
        working_hours=team.working_hours,
        holiday_calendar=holidays if team.holiday_country else None,
    )


async def _locked(session: AsyncSession, team_id: str) -> Team | None:
    # Two PUTs of one team take turns, so the second of two equal PUTs sees no change.
    await begin_writing(session, Team)
    statement = select(Team).where(Team.id == team_id).with_for_update().execution_options(populate_existing=True)
    return (await session.exec(statement)).first()


def _audit(session: AsyncSession, *, actor: ApiKey | None, team: Team, created: bool) -> None:
    audit.record(
        session,
        actor=actor,
        action="team.created" if created else "team.updated",
        target=team.id,
        detail={**team.state(), "version": team.version},
    )


async def put(*, session: AsyncSession, team_id: str, team_in: TeamPut, actor: ApiKey | None) -> Stored:
    """Store a team's whole state and commit; team.changed (and an audit entry) only if it differs."""
    fields = _fields(team_in)
    team = await _locked(session, team_id)
    if team is None:
        now = utcnow()
        team = Team(id=team_id, **fields, created_at=now, updated_at=now)
        if await insert_unless_taken(session, [team]):
            outbox.add(session, new_event(announcement(team), source=SOURCE))
            _audit(session, actor=actor, team=team, created=True)
            await session.commit()
            return Stored(team=team, created=True, changed=True)
        team = await _locked(session, team_id)  # another request created it first
        assert team is not None
    if team.state() == fields:
        await session.commit()
        return Stored(team=team, created=False, changed=False)
    team.sqlmodel_update(fields)
    team.version += 1
    team.updated_at = utcnow()
    session.add(team)
    outbox.add(session, new_event(announcement(team), source=SOURCE))
    _audit(session, actor=actor, team=team, created=False)
    await session.commit()
    return Stored(team=team, created=False, changed=True)


async def get(*, session: AsyncSession, team_id: str) -> Team | None:
    """A team by id."""
    return await session.get(Team, team_id)


async def get_all(*, session: AsyncSession) -> list[Team]:
    """Every team, by id."""
    return list((await session.exec(select(Team).order_by(col(Team.id)))).all())


async def get_many(*, session: AsyncSession, team_ids: list[str]) -> list[Team]:
    """The teams of these ids that exist."""
    if not team_ids:
        return []
    return list((await session.exec(select(Team).where(col(Team.id).in_(team_ids)))).all())


def public(team: Team) -> TeamPublic:
    """The team as the API shows it."""
    holidays = {"country": team.holiday_country, "subdivision": team.holiday_subdivision}
    return TeamPublic.model_validate(
        dict(
            id=team.id,
            name=team.name,
            timezone=team.timezone,
            working_hours=team.working_hours,
            holidays=holidays if team.holiday_country else None,
            manager_rep_id=team.manager_rep_id,
            version=team.version,
            created_at=team.created_at,
            updated_at=team.updated_at,
        )
    )
