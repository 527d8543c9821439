"""Business clocks: deadlines and elapsed time on team calendars, and team.changed kept by highest version."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select

from leadrelay.calendar import TeamCalendar
from leadrelay.events import CloudEvent, SlaClock, TeamChanged, new_event
from leadrelay.testing import Storage, migrated, migrations_of
from sla_monitor.clocks import handlers as clock_handlers
from sla_monitor.clocks import service
from sla_monitor.clocks.models import TeamCalendarRecord
from sla_monitor.config import SlaMonitorSettings
from sla_monitor.context import SlaContext

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")


def hours(days: tuple[str, ...], *intervals: tuple[str, str]) -> dict[str, list[dict[str, str]]]:
    return {day: [{"start": start, "end": end} for start, end in intervals] for day in days}


def calendar(timezone: str, working_hours: dict[str, Any], holidays: dict[str, str] | None = None) -> TeamCalendar:
    return TeamCalendar.from_payload(timezone=timezone, working_hours=working_hours, holiday_calendar=holidays)


NEW_YORK = calendar("America/New_York", hours(WEEKDAYS, ("09:00", "17:00")), {"country": "US"})
LONDON = calendar("Europe/London", hours(WEEKDAYS, ("09:00", "17:30")), {"country": "GB", "subdivision": "ENG"})
KOLKATA = calendar("Asia/Kolkata", hours((*WEEKDAYS, "sat"), ("10:00", "19:00")), {"country": "IN"})
SYDNEY = calendar("Australia/Sydney", hours(WEEKDAYS, ("09:00", "17:00")), {"country": "AU", "subdivision": "NSW"})
# A night shift, Monday 22:00 to Saturday 06:00: each night spanning midnight is two intervals.
NIGHT_HOURS = {
    day: ([{"start": "00:00", "end": "06:00"}] if day != "mon" else [])
    + ([{"start": "22:00", "end": "24:00"}] if day != "sat" else [])
    for day in (*WEEKDAYS, "sat")
}
NIGHTS = calendar("UTC", NIGHT_HOURS)
LATE = calendar("UTC", hours(("mon", "tue"), ("09:00", "24:00")))
SPLIT = calendar("Europe/London", hours(WEEKDAYS, ("09:00", "12:00"), ("13:00", "17:00")))
NEVER = calendar("UTC", {})


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


H = 3600


@pytest.mark.parametrize(
    ("team", "start", "seconds", "due"),
    [
        # New York: Thanksgiving (Thu 26 Nov 2026) is closed; 16:00 EST is 21:00Z
        (NEW_YORK, utc(2026, 11, 25, 21), 2 * H, utc(2026, 11, 27, 15)),
        # a weekend start waits for Monday 09:00
        (NEW_YORK, utc(2026, 11, 28, 17), H / 2, utc(2026, 11, 30, 14, 30)),
        # DST starts Sun 8 Mar 2026: Friday 16:00 EST, Monday 10:00 EDT
        (NEW_YORK, utc(2026, 3, 6, 21), 2 * H, utc(2026, 3, 9, 14)),
        # DST ends Sun 1 Nov 2026: Friday 16:00 EDT, Monday 10:00 EST
        (NEW_YORK, utc(2026, 10, 30, 20), 2 * H, utc(2026, 11, 2, 15)),
        # London: BST ends Sun 25 Oct 2026 (Friday 17:00 BST is 16:00Z; Monday 09:30 GMT is 09:30Z)
        (LONDON, utc(2026, 10, 23, 16), H, utc(2026, 10, 26, 9, 30)),
        # BST starts Sun 29 Mar 2026: Friday 17:00 GMT, Monday 09:30 BST
        (LONDON, utc(2026, 3, 27, 17), H, utc(2026, 3, 30, 8, 30)),
        # Christmas Fri 25, Boxing Day (observed) Mon 28 Dec 2026
        (LONDON, utc(2026, 12, 24, 17), H, utc(2026, 12, 29, 9, 30)),
        # a lunch break is not business time
        (SPLIT, utc(2026, 11, 24, 11), 2 * H, utc(2026, 11, 24, 14)),
        # Kolkata (UTC+5:30) works Saturdays: Sat 18:00 IST + 2h is Mon 11:00 IST
        (KOLKATA, utc(2026, 11, 28, 12, 30), 2 * H, utc(2026, 11, 30, 5, 30)),
        # Republic Day, Tue 26 Jan 2027
        (KOLKATA, utc(2027, 1, 25, 13), H, utc(2027, 1, 27, 5)),
        # Sydney: AEDT starts Sun 4 Oct 2026 and Mon 5 Oct is Labour Day (NSW): Friday 16:00 AEST, Tuesday 10:00 AEDT
        (SYDNEY, utc(2026, 10, 2, 6), 2 * H, utc(2026, 10, 5, 23)),
        # AEDT ends Sun 5 Apr 2026 (Good Friday 3 Apr, Easter Monday 6 Apr): Thursday 16:00 AEDT, Tuesday 10:00 AEST
        (SYDNEY, utc(2026, 4, 2, 5), 2 * H, utc(2026, 4, 7, 0)),
        # a window spanning the night: Mon 23:00 + 3h is Tue 02:00
        (NIGHTS, utc(2026, 11, 23, 23), 3 * H, utc(2026, 11, 24, 2)),
        # Friday night runs into Saturday morning, then waits for Monday 22:00
        (NIGHTS, utc(2026, 11, 27, 23), 8 * H, utc(2026, 11, 30, 23)),
        # a day ending at 24:00
        (LATE, utc(2026, 11, 23, 23, 30), H, utc(2026, 11, 24, 9, 30)),
        (LATE, utc(2026, 11, 23, 23, 30), H / 2, utc(2026, 11, 24, 0)),
    ],
)  # fmt: skip
def test_a_business_deadline_counts_only_open_time(
    team: TeamCalendar, start: datetime, seconds: float, due: datetime
) -> None:
    assert service.deadline(clock=SlaClock.BUSINESS, calendar=team, start=start, seconds=seconds) == due
    wall, business = service.elapsed(calendar=team, start=start, end=due)
    assert (wall, business) == ((due - start).total_seconds(), seconds)


@pytest.mark.parametrize(
    ("clock", "team", "start", "seconds", "due"),
    [
        # the wall clock ignores the calendar
        (SlaClock.WALL, NEW_YORK, utc(2026, 11, 25, 21), 2 * H, utc(2026, 11, 25, 23)),
        # a team unknown here runs 24/7 until its calendar arrives
        (SlaClock.BUSINESS, None, utc(2026, 11, 28, 17), 2 * H, utc(2026, 11, 28, 19)),
        # a calendar that never opens: the window runs on the wall clock rather than never ending
        (SlaClock.BUSINESS, NEVER, utc(2026, 11, 28, 17), 2 * H, utc(2026, 11, 28, 19)),
    ],
)
def test_a_wall_deadline(
    clock: SlaClock, team: TeamCalendar | None, start: datetime, seconds: float, due: datetime
) -> None:
    assert service.deadline(clock=clock, calendar=team, start=start, seconds=seconds) == due


@pytest.mark.parametrize(
    ("team", "start", "end", "wall", "business"),
    [
        # across spring forward: 65 wall hours (one hour fewer), 2 business hours
        (NEW_YORK, utc(2026, 3, 6, 21), utc(2026, 3, 9, 14), 65 * H, 2 * H),
        # across fall back: 67 wall hours
        (NEW_YORK, utc(2026, 10, 30, 20), utc(2026, 11, 2, 15), 67 * H, 2 * H),
        # a whole closed weekend
        (LONDON, utc(2026, 11, 28), utc(2026, 11, 30), 48 * H, 0),
        # a whole working week (Thanksgiving included): 4 days of 8 hours
        (NEW_YORK, utc(2026, 11, 23), utc(2026, 11, 30), 7 * 24 * H, 4 * 8 * H),
        (None, utc(2026, 11, 28), utc(2026, 11, 30), 48 * H, 48 * H),
        (NEVER, utc(2026, 11, 28), utc(2026, 11, 30), 48 * H, 0),
        # an end before the start is no time at all
        (NEW_YORK, utc(2026, 11, 24, 16), utc(2026, 11, 24, 15), 0, 0),
    ],
)
def test_elapsed_counts_wall_and_business_seconds(
    team: TeamCalendar | None, start: datetime, end: datetime, wall: float, business: float
) -> None:
    assert service.elapsed(calendar=team, start=start, end=end) == (wall, business)


CHANGED_AT = utc(2026, 11, 23, 12)


def team_changed(
    version: int, *, team_id: str = "team-na", timezone: str = "America/New_York"
) -> CloudEvent[TeamChanged]:
    data = TeamChanged(
        team_id=team_id,
        name="North America",
        timezone=timezone,
        working_hours=hours(WEEKDAYS, ("09:00", "17:00")),
        holidays={"country": "US"} if version % 2 else None,
        manager_rep_id=f"rep-manager-{version}",
        version=version,
        changed_at=CHANGED_AT + timedelta(minutes=version),
    )
    return new_event(data, source="leadrelay/router")


@pytest.fixture
async def storage(database_url: str) -> AsyncIterator[Storage]:
    """The sla-monitor's schema, by its own migrations, on the test's backend."""
    async with migrated(database_url, migrations_of("sla_monitor")) as storage:
        yield storage


@pytest.fixture
def rescheduled(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, TeamCalendar]]:
    """The teams whose timers the handler asked to move, with the calendar it passed (timers' tests cover the move)."""
    calls: list[tuple[str, TeamCalendar]] = []

    async def reschedule_team(*, session: object, team_id: str, calendar: TeamCalendar, now: datetime) -> int:
        calls.append((team_id, calendar))
        return 1

    monkeypatch.setattr(clock_handlers.timers, "reschedule_team", reschedule_team)
    return calls


async def _deliver(storage: Storage, context: SlaContext, *events: CloudEvent[TeamChanged]) -> None:
    async with storage.sessions() as session:
        await clock_handlers.on_team_changed(list(events), session, context=context)
        await session.commit()


async def _stored(storage: Storage) -> list[tuple[str, int, str, str | None, dict[str, Any] | None]]:
    async with storage.sessions() as session:
        records = (await session.exec(select(TeamCalendarRecord).order_by(TeamCalendarRecord.team_id))).all()
        return [(r.team_id, r.version, r.timezone, r.manager_rep_id, r.holidays) for r in records]


async def test_the_highest_version_of_a_team_wins(
    storage: Storage, rescheduled: list[tuple[str, TeamCalendar]]
) -> None:
    context = SlaContext.of(SlaMonitorSettings())
    await _deliver(storage, context, team_changed(2))
    assert await _stored(storage) == [("team-na", 2, "America/New_York", "rep-manager-2", None)]
    assert [team_id for team_id, _ in rescheduled] == ["team-na"]
    assert rescheduled[0][1].holiday_country is None

    # a redelivery and an older version change nothing and move no timers
    await _deliver(storage, context, team_changed(2, timezone="Europe/London"), team_changed(1))
    assert await _stored(storage) == [("team-na", 2, "America/New_York", "rep-manager-2", None)]
    assert len(rescheduled) == 1

    # two versions in one batch: the later one is kept, an older one after it is ignored
    await _deliver(storage, context, team_changed(3), team_changed(5, timezone="Europe/London"), team_changed(4))
    assert await _stored(storage) == [
        ("team-na", 5, "Europe/London", "rep-manager-5", {"country": "US", "subdivision": None})
    ]
    assert [team_id for team_id, _ in rescheduled] == ["team-na"] * 3
    assert (rescheduled[-1][1].timezone, rescheduled[-1][1].holiday_country) == ("Europe/London", "US")

    # another team is kept beside it
    await _deliver(storage, context, team_changed(1, team_id="team-emea", timezone="Europe/London"))
    assert [row[:2] for row in await _stored(storage)] == [("team-emea", 1), ("team-na", 5)]


async def test_clocks_answer_the_stored_calendar_and_follow_its_changes(
    storage: Storage, rescheduled: list[tuple[str, TeamCalendar]]
) -> None:
    context = SlaContext.of(SlaMonitorSettings())
    async with storage.sessions() as session:
        assert await context.clocks.calendar(session, "team-na") is None  # unknown: 24/7
        assert await context.clocks.calendar(session, None) is None
    await _deliver(storage, context, team_changed(1))
    async with storage.sessions() as session:
        first = await context.clocks.calendar(session, "team-na")
        assert first is not None
        assert (first.timezone, first.holiday_country) == ("America/New_York", "US")
        assert await context.clocks.calendar(session, "team-na") is first  # built once per version
    await _deliver(storage, context, team_changed(2, timezone="Asia/Kolkata"))
    async with storage.sessions() as session:
        second = await context.clocks.calendar(session, "team-na")
        assert second is not None
        assert (second.timezone, second.holiday_country) == ("Asia/Kolkata", None)


@pytest.mark.parametrize(("version", "kept"), [(1, 2), (2, 2), (3, 3)])
async def test_a_replica_that_stored_the_team_first_is_compared_with_not_overwritten(
    storage: Storage, monkeypatch: pytest.MonkeyPatch, version: int, kept: int
) -> None:
    async with storage.sessions() as session:
        assert await service.store(session=session, team=team_changed(2).data) is not None
        await session.commit()
    real_get = service.get
    looks: list[str] = []

    async def missed_once(*, session: Any, team_id: str) -> TeamCalendarRecord | None:
        # As if another replica inserted the team between this one's read and its insert.
        looks.append(team_id)
        return None if len(looks) == 1 else await real_get(session=session, team_id=team_id)

    monkeypatch.setattr(service, "get", missed_once)
    async with storage.sessions() as session:
        stored = await service.store(session=session, team=team_changed(version).data)
        await session.commit()
    assert (stored is not None) == (version > 2)
    assert len(looks) == 2  # the insert lost, then the winner's row was read
    assert [row[1] for row in await _stored(storage)] == [kept]
