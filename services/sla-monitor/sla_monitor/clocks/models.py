"""Team calendars as router last announced them."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel


class TeamCalendarRecord(SQLModel, table=True):
    """The latest `team.changed` of a team (highest version wins): its business calendar, as announced."""

    __tablename__ = "team_calendar"

    team_id: str = Field(primary_key=True, max_length=100)
    version: int
    timezone: str = Field(max_length=64)
    working_hours: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    holidays: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    manager_rep_id: str | None = Field(default=None, max_length=100)
    changed_at: datetime
