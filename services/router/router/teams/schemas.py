"""Request and response shapes of the teams API."""

import itertools
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from leadrelay.calendar import Weekday, known_timezones, parse_clock, supported_holiday_calendars
from leadrelay.validation import storable

EXAMPLE_TEAM_ID = "team-emea"

TEAM_EXAMPLE: dict[str, Any] = {
    "name": "EMEA inside sales",
    "timezone": "Europe/London",
    "working_hours": {
        "mon": [{"start": "09:00", "end": "12:30"}, {"start": "13:30", "end": "17:30"}],
        "tue": [{"start": "09:00", "end": "17:30"}],
        "wed": [{"start": "09:00", "end": "17:30"}],
        "thu": [{"start": "09:00", "end": "17:30"}],
        "fri": [{"start": "09:00", "end": "16:00"}],
    },
    "holidays": {"country": "GB", "subdivision": "ENG"},
    "manager_rep_id": "rep-grace",
}

TEAM_PUBLIC_EXAMPLE: dict[str, Any] = {
    **TEAM_EXAMPLE,
    "id": EXAMPLE_TEAM_ID,
    "version": 1,
    "created_at": "2026-11-27T10:00:00Z",
    "updated_at": "2026-11-27T10:00:00Z",
}


class IntervalIn(BaseModel):
    """Open from `start` to `end` (local `HH:MM`; `end` may be `24:00`)."""

    model_config = ConfigDict(extra="forbid")

    start: str = Field(examples=["09:00"])
    end: str = Field(examples=["17:30"])

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        parse_clock(value)
        return value

    @field_validator("end")
    @classmethod
    def _after_start(cls, value: str, info: ValidationInfo) -> str:
        start = info.data.get("start")
        if start is not None and parse_clock(value) <= parse_clock(start):
            raise ValueError(f"must be after start ({start})")
        return value


def _no_overlap(intervals: list[IntervalIn]) -> list[IntervalIn]:
    ordered = sorted(intervals, key=lambda interval: parse_clock(interval.start))
    for before, after in itertools.pairwise(ordered):
        if parse_clock(after.start) < parse_clock(before.end):
            raise ValueError(f"intervals {before.start}-{before.end} and {after.start}-{after.end} overlap")
    return ordered


DayHours = Annotated[list[IntervalIn], Field(max_length=24), AfterValidator(_no_overlap)]


class HolidayCalendarIn(BaseModel):
    """A public-holiday calendar of the `holidays` package: a country and optionally a subdivision."""

    model_config = ConfigDict(extra="forbid")

    country: str = Field(description="ISO 3166-1 alpha-2, e.g. GB", examples=["GB"])
    subdivision: str | None = Field(
        default=None, description="The country's subdivision code, e.g. ENG", examples=["ENG"]
    )

    @field_validator("country")
    @classmethod
    def _known_country(cls, value: str) -> str:
        code = value.upper()
        if code not in supported_holiday_calendars():
            raise ValueError(f"{value!r} is not a country the holidays package knows (ISO 3166-1 alpha-2, e.g. GB)")
        return code

    @field_validator("subdivision")
    @classmethod
    def _known_subdivision(cls, value: str | None, info: ValidationInfo) -> str | None:
        country = info.data.get("country")
        if value is None or country is None:
            return value
        known = supported_holiday_calendars()[country]
        match = next((code for code in known if code.upper() == value.upper()), None)
        if match is None:
            listed = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
            raise ValueError(f"{value!r} is not a subdivision of {country} ({listed or 'it has none'})")
        return match


class TeamPut(BaseModel):
    """A team's whole state (PUT replaces it: a field left out is cleared)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [TEAM_EXAMPLE]})

    name: str = Field(min_length=1, max_length=200)
    timezone: str = Field(description="An IANA timezone name, e.g. Europe/London", examples=["Europe/London"])
    working_hours: dict[Weekday, DayHours] = Field(
        default_factory=dict,
        description="Local opening intervals per weekday (mon..sun); a day left out is closed.",
    )
    holidays: HolidayCalendarIn | None = Field(default=None, description="Closed on these public holidays.")
    manager_rep_id: str | None = Field(
        default=None, min_length=1, max_length=100, description="The rep a lead escalates to when nobody else is left."
    )

    @field_validator("name", "manager_rep_id")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        return None if value is None else str(storable(value))

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        if value not in known_timezones():
            raise ValueError(f"{value!r} is not an IANA timezone name (e.g. Europe/London, America/New_York)")
        return value


class TeamPublic(TeamPut):
    """A stored team."""

    model_config = ConfigDict(json_schema_extra={"examples": [TEAM_PUBLIC_EXAMPLE]})

    id: str
    version: int
    created_at: datetime
    updated_at: datetime


class TeamList(BaseModel):
    """Every team, by id."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"teams": [TEAM_PUBLIC_EXAMPLE]}]})

    teams: list[TeamPublic]
