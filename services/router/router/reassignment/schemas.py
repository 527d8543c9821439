"""What the reassignment endpoint takes."""

from pydantic import BaseModel, ConfigDict, Field

from router.reps.models import REP_ID_PATTERN


class ReassignRequest(BaseModel):
    """Why the lead moves, and optionally to whom (else the next available rep who has not held it)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"reason": "Ada is off sick today"},
                {"reason": "picked up from the EMEA queue", "rep_id": "rep-cy"},
            ]
        },
    )

    reason: str = Field(min_length=1, max_length=500, description="Why, for the lead's history and the audit log.")
    rep_id: str | None = Field(
        default=None,
        pattern=REP_ID_PATTERN,
        description="A named rep (existing and active) takes the lead, e.g. from a team queue; without it, the next "
        "available rep who has not held the lead, else the team's manager, else the team's queue.",
    )
