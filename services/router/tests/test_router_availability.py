"""Availability and business calendars, table-driven: timezones, DST, holidays, out of office, caps, toggles."""

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from leadrelay.calendar import TeamCalendar
from router.reps.availability import Availability, Unavailable, check, next_open
from router.reps.models import Rep

WEEKDAYS_9_TO_1730 = {day: [{"start": "09:00", "end": "17:30"}] for day in ("mon", "tue", "wed", "thu", "fri")}
WEEKDAYS_9_TO_17 = {day: [{"start": "09:00", "end": "17:00"}] for day in ("mon", "tue", "wed", "thu", "fri")}
WITH_LUNCH = {
    day: [{"start": "09:00", "end": "12:30"}, {"start": "13:30", "end": "17:30"}]
    for day in ("mon", "tue", "wed", "thu", "fri")
}
EVERY_DAY_ALL_DAY = {
    day: [{"start": "00:00", "end": "24:00"}] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
}

LONDON = TeamCalendar.from_payload(
    timezone="Europe/London", working_hours=WEEKDAYS_9_TO_1730, holiday_calendar={"country": "GB", "subdivision": "ENG"}
)
NEW_YORK = TeamCalendar.from_payload(
    timezone="America/New_York", working_hours=WEEKDAYS_9_TO_17, holiday_calendar={"country": "US", "subdivision": None}
)
LONDON_LUNCH = TeamCalendar.from_payload(timezone="Europe/London", working_hours=WITH_LUNCH, holiday_calendar=None)
LONDON_ALWAYS = TeamCalendar.from_payload(
    timezone="Europe/London", working_hours=EVERY_DAY_ALL_DAY, holiday_calendar=None
)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def rep(**fields: Any) -> Rep:
    return Rep(id="rep-a", name="A", teams=["t"], **fields)


OPEN = Availability(available=True)


def closed(reason: Unavailable) -> Availability:
    return Availability(available=False, reason=reason)


# 2026: London springs forward on Sun 29 March and falls back on Sun 25 October; New York on Sun 8
# March and Sun 1 November. Each row is a local 08:30 or 09:30 written in UTC.
HOURS_ACROSS_DST = [
    ("London Fri before spring, 08:30 GMT", LONDON, "2026-03-27T08:30", Unavailable.OUTSIDE_HOURS),
    ("London Fri before spring, 09:30 GMT", LONDON, "2026-03-27T09:30", None),
    ("London Mon after spring, 08:30 BST", LONDON, "2026-03-30T07:30", Unavailable.OUTSIDE_HOURS),
    ("London Mon after spring, 09:30 BST", LONDON, "2026-03-30T08:30", None),
    ("London Fri before autumn, 08:30 BST", LONDON, "2026-10-23T07:30", Unavailable.OUTSIDE_HOURS),
    ("London Fri before autumn, 09:30 BST", LONDON, "2026-10-23T08:30", None),
    ("London Mon after autumn, 08:30 GMT", LONDON, "2026-10-26T08:30", Unavailable.OUTSIDE_HOURS),
    ("London Mon after autumn, 09:30 GMT", LONDON, "2026-10-26T09:30", None),
    ("London 17:29 BST", LONDON, "2026-06-10T16:29", None),
    ("London 17:30 BST (end is exclusive)", LONDON, "2026-06-10T16:30", Unavailable.OUTSIDE_HOURS),
    ("London Saturday", LONDON, "2026-06-13T10:00", Unavailable.OUTSIDE_HOURS),
    ("New York Fri before spring, 08:30 EST", NEW_YORK, "2026-03-06T13:30", Unavailable.OUTSIDE_HOURS),
    ("New York Fri before spring, 09:30 EST", NEW_YORK, "2026-03-06T14:30", None),
    ("New York Mon after spring, 08:30 EDT", NEW_YORK, "2026-03-09T12:30", Unavailable.OUTSIDE_HOURS),
    ("New York Mon after spring, 09:30 EDT", NEW_YORK, "2026-03-09T13:30", None),
    ("New York Fri before autumn, 08:30 EDT", NEW_YORK, "2026-10-30T12:30", Unavailable.OUTSIDE_HOURS),
    ("New York Fri before autumn, 09:30 EDT", NEW_YORK, "2026-10-30T13:30", None),
    ("New York Mon after autumn, 08:30 EST", NEW_YORK, "2026-11-02T13:30", Unavailable.OUTSIDE_HOURS),
    ("New York Mon after autumn, 09:30 EST", NEW_YORK, "2026-11-02T14:30", None),
    ("London lunch break", LONDON_LUNCH, "2026-06-10T12:00", Unavailable.OUTSIDE_HOURS),
    ("London after lunch", LONDON_LUNCH, "2026-06-10T12:30", None),
    ("London Spring Bank Holiday, 10:00 BST", LONDON, "2026-05-25T09:00", Unavailable.HOLIDAY),
    ("London Boxing Day observed, 10:00 GMT", LONDON, "2026-12-28T10:00", Unavailable.HOLIDAY),
    ("London Good Friday", LONDON, "2026-04-03T10:00", Unavailable.HOLIDAY),
    ("London the day after Easter Monday", LONDON, "2026-04-07T09:00", None),
    ("New York Independence Day observed", NEW_YORK, "2026-07-03T14:00", Unavailable.HOLIDAY),
    ("New York on the UK's bank holiday (Memorial Day too)", NEW_YORK, "2026-05-25T14:00", Unavailable.HOLIDAY),
    ("New York on the UK's August bank holiday", NEW_YORK, "2026-08-31T14:00", None),
]


@pytest.mark.parametrize(("case", "team", "at", "reason"), HOURS_ACROSS_DST, ids=[row[0] for row in HOURS_ACROSS_DST])
def test_working_hours_are_local_to_the_team_across_dst_and_holidays(
    case: str, team: TeamCalendar, at: str, reason: Unavailable | None
) -> None:
    result = check(rep=rep(), teams=[team], at=utc(at), assigned_today=0, assigned_this_week=0)
    assert result == (OPEN if reason is None else closed(reason)), case


OOO = [{"start": "2026-06-10T00:00:00+00:00", "end": "2026-06-12T00:00:00+00:00"}]
WEDNESDAY_10_BST = "2026-06-10T09:00"
REP_RULES = [
    ("inactive", {"active": False}, 0, 0, Unavailable.INACTIVE),
    ("inactive wins over toggled off", {"active": False, "available": False}, 0, 0, Unavailable.INACTIVE),
    ("toggled off", {"available": False}, 0, 0, Unavailable.TOGGLED_OFF),
    ("out of office", {"out_of_office": OOO}, 0, 0, Unavailable.OUT_OF_OFFICE),
    ("daily cap reached", {"daily_cap": 5}, 5, 5, Unavailable.DAILY_CAP),
    ("daily cap not reached", {"daily_cap": 5}, 4, 40, None),
    ("daily cap of zero", {"daily_cap": 0}, 0, 0, Unavailable.DAILY_CAP),
    ("weekly cap reached", {"daily_cap": 10, "weekly_cap": 20}, 3, 20, Unavailable.WEEKLY_CAP),
    ("weekly cap not reached", {"weekly_cap": 20}, 3, 19, None),
    ("no caps", {}, 1000, 10_000, None),
]


@pytest.mark.parametrize(("case", "fields", "today", "week", "reason"), REP_RULES, ids=[row[0] for row in REP_RULES])
def test_the_rep_s_own_state_and_load(
    case: str, fields: dict[str, Any], today: int, week: int, reason: Unavailable | None
) -> None:
    result = check(
        rep=rep(**fields), teams=[LONDON], at=utc(WEDNESDAY_10_BST), assigned_today=today, assigned_this_week=week
    )
    assert result == (OPEN if reason is None else closed(reason)), case


@pytest.mark.parametrize(
    ("at", "reason"),
    [
        ("2026-06-09T23:59:59", None),  # just before the window
        ("2026-06-10T00:00:00", Unavailable.OUT_OF_OFFICE),  # start is inclusive
        ("2026-06-11T23:59:59", Unavailable.OUT_OF_OFFICE),
        ("2026-06-12T00:00:00", None),  # end is exclusive
    ],
)
def test_out_of_office_windows_are_half_open(at: str, reason: Unavailable | None) -> None:
    result = check(
        rep=rep(out_of_office=OOO), teams=[LONDON_ALWAYS], at=utc(at), assigned_today=0, assigned_this_week=0
    )
    assert result == (OPEN if reason is None else closed(reason))


MULTI_TEAM = [
    ("London closed (18:00 GMT), New York open (13:00 EST)", [LONDON, NEW_YORK], "2026-11-18T18:00", None),
    ("both closed", [LONDON, NEW_YORK], "2026-11-18T23:30", Unavailable.OUTSIDE_HOURS),
    ("London on a bank holiday, New York open", [LONDON, NEW_YORK], "2026-08-31T14:00", None),
    (
        "London on a bank holiday, New York not yet open",
        [LONDON, NEW_YORK],
        "2026-08-31T10:00",
        Unavailable.OUTSIDE_HOURS,
    ),
    ("both on a holiday (25 May)", [LONDON, NEW_YORK], "2026-05-25T14:00", Unavailable.HOLIDAY),
    ("no team at all", [], "2026-06-10T09:00", Unavailable.NO_TEAM),
]


@pytest.mark.parametrize(("case", "teams", "at", "reason"), MULTI_TEAM, ids=[row[0] for row in MULTI_TEAM])
def test_a_rep_in_several_teams_is_available_when_any_team_is_open(
    case: str, teams: list[TeamCalendar], at: str, reason: Unavailable | None
) -> None:
    result = check(rep=rep(), teams=teams, at=utc(at), assigned_today=0, assigned_this_week=0)
    assert result == (OPEN if reason is None else closed(reason)), case


NEXT_OPEN = [
    ("open now", [LONDON], "2026-06-10T09:00", "2026-06-10T09:00"),
    ("Friday evening to Monday 09:00 BST", [LONDON], "2026-06-12T17:00", "2026-06-15T08:00"),
    ("weekend across spring DST to Monday 09:00 BST", [LONDON], "2026-03-28T12:00", "2026-03-30T08:00"),
    ("weekend across autumn DST to Monday 09:00 GMT", [LONDON], "2026-10-24T12:00", "2026-10-26T09:00"),
    ("before the bank holiday Monday to Tuesday", [LONDON], "2026-05-22T18:00", "2026-05-26T08:00"),
    ("Christmas to the first working day", [LONDON], "2026-12-24T18:00", "2026-12-29T09:00"),
    ("lunch break to 13:30", [LONDON_LUNCH], "2026-06-10T11:45", "2026-06-10T12:30"),
    ("the earlier of two teams", [LONDON, NEW_YORK], "2026-11-18T18:00", "2026-11-18T18:00"),
    ("New York opens before London reopens", [LONDON, NEW_YORK], "2026-11-20T17:30", "2026-11-20T17:30"),
    ("Friday night: London reopens first", [LONDON, NEW_YORK], "2026-11-20T23:00", "2026-11-23T09:00"),
]


@pytest.mark.parametrize(("case", "teams", "at", "expected"), NEXT_OPEN, ids=[row[0] for row in NEXT_OPEN])
def test_next_opening(case: str, teams: list[TeamCalendar], at: str, expected: str) -> None:
    assert next_open(teams, utc(at)) == utc(expected), case


def test_a_team_without_hours_never_opens() -> None:
    never = TeamCalendar.from_payload(timezone="Europe/London", working_hours={}, holiday_calendar=None)
    assert next_open([never], utc("2026-06-10T09:00")) is None
    assert never.add_business_seconds(utc("2026-06-10T09:00"), 60) is None
    assert never.business_seconds_between(utc("2026-06-10T09:00"), utc("2026-06-20T09:00")) == 0


HOUR = 3600.0
BUSINESS_SECONDS = [
    ("within one interval", LONDON, "2026-06-10T09:00", "2026-06-10T10:00", HOUR),
    ("over a lunch break (12:00 to 14:00 BST)", LONDON_LUNCH, "2026-06-10T11:00", "2026-06-10T13:00", HOUR),
    ("over a weekend", LONDON, "2026-06-12T16:00", "2026-06-15T09:00", 1.5 * HOUR),
    ("over the spring DST weekend", LONDON, "2026-03-27T16:30", "2026-03-30T09:00", 2 * HOUR),
    ("Fri 16:30 BST to Tue 10:00 BST over a bank holiday", LONDON, "2026-05-22T15:30", "2026-05-26T09:00", 2 * HOUR),
    ("the short day of spring DST (23 h)", LONDON_ALWAYS, "2026-03-29T00:00", "2026-03-29T23:00", 23 * HOUR),
    ("the long day of autumn DST (25 h)", LONDON_ALWAYS, "2026-10-24T23:00", "2026-10-26T00:00", 25 * HOUR),
    ("end before start", LONDON, "2026-06-10T12:00", "2026-06-10T10:00", 0.0),
]


@pytest.mark.parametrize(
    ("case", "team", "start", "end", "seconds"), BUSINESS_SECONDS, ids=[row[0] for row in BUSINESS_SECONDS]
)
def test_business_seconds_between(case: str, team: TeamCalendar, start: str, end: str, seconds: float) -> None:
    assert team.business_seconds_between(utc(start), utc(end)) == seconds, case
    if seconds:
        # The inverse: adding the business seconds to the start lands on the end, or on when the team
        # next opened if the end fell while it was closed.
        landed = team.add_business_seconds(utc(start), seconds)
        assert landed is not None
        assert team.business_seconds_between(utc(start), landed) == seconds
        assert landed <= utc(end)


ADD_BUSINESS = [
    ("within the day", LONDON, "2026-06-10T09:00", HOUR, "2026-06-10T10:00"),
    ("Friday 17:00 BST + 1 h to Monday 09:30 BST", LONDON, "2026-06-12T16:00", HOUR, "2026-06-15T08:30"),
    ("Friday 17:00 GMT + 1 h across spring DST", LONDON, "2026-03-27T17:00", HOUR, "2026-03-30T08:30"),
    ("Friday 17:00 BST + 1 h across autumn DST", LONDON, "2026-10-23T16:00", HOUR, "2026-10-26T09:30"),
    ("from a closed time, starts at opening", LONDON, "2026-06-13T12:00", HOUR, "2026-06-15T09:00"),
    ("zero from a closed time is the next opening", LONDON, "2026-06-13T12:00", 0.0, "2026-06-15T08:00"),
    ("over lunch", LONDON_LUNCH, "2026-06-10T11:00", 2 * HOUR, "2026-06-10T14:00"),
    ("New York 16:30 EST + 1 h", NEW_YORK, "2026-11-20T21:30", HOUR, "2026-11-23T14:30"),
    ("New York over Thanksgiving", NEW_YORK, "2026-11-25T21:30", HOUR, "2026-11-27T14:30"),
]


@pytest.mark.parametrize(
    ("case", "team", "start", "seconds", "expected"), ADD_BUSINESS, ids=[row[0] for row in ADD_BUSINESS]
)
def test_add_business_seconds(case: str, team: TeamCalendar, start: str, seconds: float, expected: str) -> None:
    assert team.add_business_seconds(utc(start), seconds) == utc(expected), case


def test_an_instant_in_another_timezone_means_the_same_moment() -> None:
    at = utc("2026-03-30T08:30")  # 09:30 BST
    assert LONDON.is_open(at)
    assert LONDON.is_open(at.astimezone(LONDON.zone))
    assert LONDON.is_open(at.astimezone(NEW_YORK.zone))
    assert not LONDON.is_open(at - timedelta(hours=1))


@pytest.mark.parametrize(
    "team", [LONDON, NEW_YORK, LONDON_LUNCH, LONDON_ALWAYS], ids=["london", "new-york", "lunch", "always"]
)
def test_adding_and_measuring_business_time_agree_over_a_year(team: TeamCalendar) -> None:
    chooser = random.Random(9)  # fixed seed: the same 300 instants every run, spread over 2026's DST changes
    year_start = utc("2026-01-01T00:00")
    for _ in range(300):
        start = year_start + timedelta(seconds=chooser.randrange(365 * 86400))
        seconds = float(chooser.randrange(0, 5 * 86400, 60))
        end = team.add_business_seconds(start, seconds)
        assert end is not None
        assert team.business_seconds_between(start, end) == seconds, (start, seconds)
        opening = team.next_open(start)
        assert opening is not None
        assert team.is_open(opening)
        assert opening == start or not team.is_open(start)
        assert team.business_seconds_between(start, opening) == 0
