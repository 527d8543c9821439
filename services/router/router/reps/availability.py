"""Whether a rep can take a lead at an instant, and if not, the one reason recorded for it.

Checked in a fixed order, the first failing check being the reason: inactive, toggled off, out of
office, daily cap, weekly cap, then the teams' calendars. A rep in several teams is available
while any of them is open; a rep in no team has no working hours and is never available.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from leadrelay.calendar import TeamCalendar
from router.reps.models import Rep


class Unavailable(StrEnum):
    """Why a rep was skipped."""

    INACTIVE = "inactive"
    TOGGLED_OFF = "toggled_off"
    OUT_OF_OFFICE = "out_of_office"
    DAILY_CAP = "daily_cap"
    WEEKLY_CAP = "weekly_cap"
    NO_TEAM = "no_team"
    HOLIDAY = "holiday"
    OUTSIDE_HOURS = "outside_hours"


@dataclass(frozen=True)
class Availability:
    """Available, or not with the reason."""

    available: bool
    reason: Unavailable | None = None


AVAILABLE = Availability(available=True)


@dataclass(frozen=True, slots=True)
class RepState:
    """What the rep's own checks read, read once: a table row's attributes are slow to read in a hot loop."""

    active: bool
    available: bool
    out_of_office: tuple[tuple[datetime, datetime], ...]
    daily_cap: int | None
    weekly_cap: int | None

    @classmethod
    def of(cls, rep: Rep) -> "RepState":
        """The state of a stored rep, its out-of-office windows parsed."""
        windows = tuple(
            (datetime.fromisoformat(window["start"]), datetime.fromisoformat(window["end"]))
            for window in rep.out_of_office
        )
        return cls(rep.active, rep.available, windows, rep.daily_cap, rep.weekly_cap)


def out_of_office(rep: Rep | RepState, at: datetime) -> bool:
    """Whether `at` falls in one of the rep's out-of-office windows (start inclusive, end exclusive)."""
    state = rep if isinstance(rep, RepState) else RepState.of(rep)
    if not state.out_of_office:  # most reps, most of the time: skip building the generator
        return False
    return any(start <= at < end for start, end in state.out_of_office)


def check(
    *, rep: Rep, teams: Sequence[TeamCalendar], at: datetime, assigned_today: int, assigned_this_week: int
) -> Availability:
    """Whether `rep` can take a lead at the aware instant `at`, given its teams' calendars and its load so far."""
    return check_rep(rep=rep, at=at, assigned_today=assigned_today, assigned_this_week=assigned_this_week) or (
        check_teams(teams, at)
    )


def check_rep(
    *, rep: Rep | RepState, at: datetime, assigned_today: int, assigned_this_week: int
) -> Availability | None:
    """The checks of the rep itself (`check` without the calendars): None when none fails."""
    if isinstance(rep, Rep):
        rep = RepState.of(rep)
    if not rep.active:
        return Availability(available=False, reason=Unavailable.INACTIVE)
    if not rep.available:
        return Availability(available=False, reason=Unavailable.TOGGLED_OFF)
    if out_of_office(rep, at):
        return Availability(available=False, reason=Unavailable.OUT_OF_OFFICE)
    if rep.daily_cap is not None and assigned_today >= rep.daily_cap:
        return Availability(available=False, reason=Unavailable.DAILY_CAP)
    if rep.weekly_cap is not None and assigned_this_week >= rep.weekly_cap:
        return Availability(available=False, reason=Unavailable.WEEKLY_CAP)
    return None


def check_teams(teams: Sequence[TeamCalendar], at: datetime) -> Availability:
    """The calendar checks of `check`: the same for every rep of the same teams at one instant."""
    if not teams:
        return Availability(available=False, reason=Unavailable.NO_TEAM)
    if any(team.is_open(at) for team in teams):
        return AVAILABLE
    # "holiday" only when every team is closed for a holiday today; otherwise it is the hours.
    if all(team.is_holiday(at.astimezone(team.zone).date()) for team in teams):
        return Availability(available=False, reason=Unavailable.HOLIDAY)
    return Availability(available=False, reason=Unavailable.OUTSIDE_HOURS)


def next_open(teams: Sequence[TeamCalendar], at: datetime) -> datetime | None:
    """The earliest instant from `at` on when any of the teams works; None if none opens within a year."""
    opens = [opening for team in teams if (opening := team.next_open(at)) is not None]
    return min(opens) if opens else None
