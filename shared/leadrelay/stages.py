"""The vocabulary services share about a lead: its lifecycle stage and the state of its SLA.

API, events, metrics and every service use these words; none spells them out itself.
"""

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

    @property
    def set_by_scoring(self) -> bool:
        """Whether scoring decides this stage; every other stage comes from a rep's activity."""
        return self in SCORING_STAGES


SCORING_STAGES = frozenset({LeadStage.LEAD, LeadStage.MQL, LeadStage.NURTURE})
"""Stages scoring may put a lead in, and move it between; once a rep moves it on, scoring no longer does."""


class SlaState(StrEnum):
    """Where an SLA obligation stands: an sla-monitor timer's status, and a lead's `sla_state` in intake."""

    RUNNING = "running"
    WARNING = "warning"
    BREACHED = "breached"
    MET = "met"


def stage_column() -> sa.Column[LeadStage]:
    """A VARCHAR column holding stage values (no database enum type to migrate) read back as LeadStage."""
    return sa.Column(
        sa.Enum(
            LeadStage, native_enum=False, length=20, values_callable=lambda stages: [stage.value for stage in stages]
        ),
        nullable=False,
    )
