"""Stored scores."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from leadrelay.events import utcnow
from leadrelay.stages import LeadStage, stage_column


class LeadScore(SQLModel, table=True):
    """The latest score of a lead and how it was reached."""

    __tablename__ = "lead_score"

    lead_id: str = Field(primary_key=True, max_length=36)
    score: int
    stage: LeadStage = Field(sa_column=stage_column())
    icp_version: str = Field(max_length=50)
    explanation: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    scored_at: datetime = Field(default_factory=utcnow)
