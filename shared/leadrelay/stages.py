"""The one lead lifecycle vocabulary shared by API, events and metrics."""

from enum import StrEnum

import sqlalchemy as sa


class LeadStage(StrEnum):
    """Lifecycle stage of a lead, in the words marketing and sales agreed on."""

    LEAD = "lead"
    MQL = "mql"
    SAL = "sal"
    SQL = "sql"
    OPPORTUNITY = "opportunity"
    WON = "won"
    LOST = "lost"
    REJECTED = "rejected"
    RECYCLED = "recycled"
    NURTURE = "nurture"


def stage_column() -> sa.Column[LeadStage]:
    """A VARCHAR column holding stage values (no database enum type to migrate) read back as LeadStage."""
    return sa.Column(
        sa.Enum(
            LeadStage, native_enum=False, length=20, values_callable=lambda stages: [stage.value for stage in stages]
        ),
        nullable=False,
    )
