"""A team as stored: its business calendar and manager; `version` grows with every change."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from leadrelay.events import utcnow

TEAM_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}$"


class Team(SQLModel, table=True):
    """A stored team; `working_hours` is `{"mon": [{"start": "09:00", "end": "17:30"}], ...}`."""

    __tablename__ = "team"

    id: str = Field(primary_key=True, max_length=100)
    name: str = Field(max_length=200)
    timezone: str = Field(max_length=64)
    working_hours: dict[str, list[dict[str, str]]] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    holiday_country: str | None = Field(default=None, max_length=2)
    holiday_subdivision: str | None = Field(default=None, max_length=40)
    manager_rep_id: str | None = Field(default=None, max_length=100)
    version: int = 1
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    def state(self) -> dict[str, Any]:
        """What a PUT sets, to tell whether a PUT changes anything."""
        return {
            "name": self.name,
            "timezone": self.timezone,
            "working_hours": self.working_hours,
            "holiday_country": self.holiday_country,
            "holiday_subdivision": self.holiday_subdivision,
            "manager_rep_id": self.manager_rep_id,
        }
