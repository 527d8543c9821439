"""Team business calendars: working hours in the team's timezone, minus its public holidays.

Pure functions over a `TeamCalendar` built from a `team.changed` payload, so the router (is a rep's
team open?) and the sla-monitor (business clocks) read one definition of "open".
"""

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import cache, lru_cache
from zoneinfo import ZoneInfo, available_timezones

import holidays

# Far enough to cross any holiday season; a calendar closed for longer is treated as never opening.
MAX_SCAN_DAYS = 400


class Weekday(StrEnum):
    """Days of the week as working hours name them (Monday first, as `date.weekday()` counts)."""

    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


WEEKDAYS = list(Weekday)


def parse_clock(value: str) -> int:
    """Minutes since midnight of `HH:MM` (00:00 to 24:00); raises ValueError."""
    hours, sep, minutes = value.partition(":")
    if not sep or len(hours) != 2 or len(minutes) != 2 or not (hours + minutes).isdigit():
        raise ValueError(f"{value!r} is not a time of day as HH:MM")
    total = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or total > 24 * 60:
        raise ValueError(f"{value!r} is not a time of day between 00:00 and 24:00")
    return total


def format_clock(minutes: int) -> str:
    """`HH:MM` of minutes since midnight."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True, order=True)
class Interval:
    """Open from `start` to `end`, minutes since local midnight (end 1440 is midnight after)."""

    start: int
    end: int


@cache
def known_timezones() -> frozenset[str]:
    """Every IANA timezone name this machine's tz database knows."""
    return frozenset(available_timezones())


def supported_holiday_calendars() -> Mapping[str, list[str]]:
    """Country code -> its subdivision codes, as the `holidays` package knows them."""
    return holidays.list_supported_countries()


@lru_cache(maxsize=256)
def _holidays(country: str, subdivision: str | None, year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays(country, subdiv=subdivision, years=year).keys())


@dataclass(frozen=True)
class TeamCalendar:
    """When a team works: weekly hours in its timezone, closed on its country's public holidays."""

    timezone: str
    working_hours: Mapping[Weekday, tuple[Interval, ...]] = field(default_factory=dict)
    holiday_country: str | None = None
    holiday_subdivision: str | None = None

    @classmethod
    def from_payload(
        cls,
        *,
        timezone: str,
        working_hours: Mapping[str, Sequence[Mapping[str, str]]],
        holiday_calendar: Mapping[str, str | None] | None,
    ) -> "TeamCalendar":
        """Build from the shape `team.changed` carries (`{"mon": [{"start": "09:00", "end": "17:30"}]}`)."""
        hours = {
            Weekday(day): tuple(sorted(Interval(parse_clock(i["start"]), parse_clock(i["end"])) for i in intervals))
            for day, intervals in working_hours.items()
        }
        return cls(
            timezone=timezone,
            working_hours=hours,
            holiday_country=holiday_calendar.get("country") if holiday_calendar else None,
            holiday_subdivision=holiday_calendar.get("subdivision") if holiday_calendar else None,
        )

    @property
    def zone(self) -> ZoneInfo:
        """The team's timezone."""
        return ZoneInfo(self.timezone)

    def is_holiday(self, day: date) -> bool:
        """Whether a local date is a public holiday of the team's calendar."""
        if self.holiday_country is None:
            return False
        return day in _holidays(self.holiday_country, self.holiday_subdivision, day.year)

    def _open_spans(self, day: date) -> Iterator[tuple[datetime, datetime]]:
        """The day's working intervals as aware datetimes (wall-clock arithmetic, so DST lands right)."""
        if self.is_holiday(day):
            return
        midnight = datetime.combine(day, time(0), tzinfo=self.zone)
        for interval in self.working_hours.get(WEEKDAYS[day.weekday()], ()):
            # In UTC from here on: arithmetic between datetimes of one ZoneInfo is wall-clock arithmetic.
            start = (midnight + timedelta(minutes=interval.start)).astimezone(UTC)
            yield start, (midnight + timedelta(minutes=interval.end)).astimezone(UTC)

    def _spans_from(self, at: datetime) -> Iterator[tuple[datetime, datetime]]:
        # Start a day early: an interval of yesterday's date may end after `at` (24:00 ends today).
        first = at.astimezone(self.zone).date() - timedelta(days=1)
        for offset in range(MAX_SCAN_DAYS):
            yield from self._open_spans(first + timedelta(days=offset))

    def is_open(self, at: datetime) -> bool:
        """Whether the team works at an aware instant."""
        local = at.astimezone(self.zone).date()
        days = (local - timedelta(days=1), local)
        return any(start <= at < end for day in days for start, end in self._open_spans(day))

    def next_open(self, at: datetime) -> datetime | None:
        """`at` if the team works then, else when it next opens; None if not within MAX_SCAN_DAYS."""
        for start, end in self._spans_from(at):
            if end > at:
                return max(start, at)
        return None

    def business_seconds_between(self, start: datetime, end: datetime) -> float:
        """Working seconds in [start, end) (0 if end is not after start)."""
        total = 0.0
        if end <= start:
            return total
        for span_start, span_end in self._spans_from(start):
            if span_start >= end:
                break
            overlap = (min(span_end, end) - max(span_start, start)).total_seconds()
            total += max(overlap, 0.0)
        return total

    def add_business_seconds(self, start: datetime, seconds: float) -> datetime | None:
        """The instant `seconds` working seconds after `start`; None if not within MAX_SCAN_DAYS."""
        left = seconds
        for span_start, span_end in self._spans_from(start):
            if span_end <= start:
                continue
            begin = max(span_start, start)
            available = (span_end - begin).total_seconds()
            if left <= available:
                return begin + timedelta(seconds=left) if left > 0 else begin
            left -= available
        return None
