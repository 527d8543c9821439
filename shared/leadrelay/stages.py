"""The vocabulary services share about a lead: its lifecycle stage, what can happen to it, and the state of its SLA.

API, events, metrics and every service use these words; none spells them out itself. The one
lifecycle state machine is `TRANSITIONS` (stage x activity -> new stage); docs/lifecycle.md prints
it from here (`transition_table_markdown`), and a test keeps the two equal.
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


class ActivityType(StrEnum):
    """Something that happened to a lead: a rep's or CRM's action, or a marketing engagement."""

    # What reps do, pushed by a CRM.
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    CONTACTED = "contacted"
    QUALIFIED = "qualified"
    OPPORTUNITY_CREATED = "opportunity_created"
    WON = "won"
    LOST = "lost"
    RECYCLED = "recycled"
    NURTURE = "nurture"
    # What the person did, seen by marketing: recorded, never a change of stage.
    FORM_SUBMITTED = "form_submitted"
    DEMO_REQUESTED = "demo_requested"
    PRICING_PAGE_VIEWED = "pricing_page_viewed"
    CONTENT_DOWNLOADED = "content_downloaded"
    WEBINAR_ATTENDED = "webinar_attended"
    EMAIL_CLICKED = "email_clicked"
    REENGAGED = "reengaged"  # a known person submitted again (intake's one lead per person)

    @property
    def is_engagement(self) -> bool:
        """Whether this is marketing engagement, which never changes the stage."""
        return self in ENGAGEMENT_ACTIVITIES


ENGAGEMENT_ACTIVITIES = frozenset(
    {
        ActivityType.FORM_SUBMITTED,
        ActivityType.DEMO_REQUESTED,
        ActivityType.PRICING_PAGE_VIEWED,
        ActivityType.CONTENT_DOWNLOADED,
        ActivityType.WEBINAR_ATTENDED,
        ActivityType.EMAIL_CLICKED,
        ActivityType.REENGAGED,
    }
)


class RejectionReason(StrEnum):
    """Why a rep rejected a lead (the reason an activity `rejected` must give)."""

    NO_BUDGET = "no_budget"
    NO_AUTHORITY = "no_authority"
    NO_NEED = "no_need"
    BAD_TIMING = "bad_timing"
    NOT_ICP_FIT = "not_icp_fit"
    INVALID_CONTACT = "invalid_contact"
    DUPLICATE = "duplicate"
    EXISTING_CUSTOMER = "existing_customer"
    COMPETITOR = "competitor"
    SPAM = "spam"


class LossReason(StrEnum):
    """Why a deal was lost (the reason an activity `lost` must give)."""

    PRICE = "price"
    COMPETITOR = "competitor"
    NO_BUDGET = "no_budget"
    NO_DECISION = "no_decision"
    BAD_TIMING = "bad_timing"
    PRODUCT_FIT = "product_fit"
    WENT_DARK = "went_dark"
    OTHER = "other"


REASONS: dict[ActivityType, type[StrEnum]] = {
    ActivityType.REJECTED: RejectionReason,
    ActivityType.LOST: LossReason,
}
"""Activities that must give a reason, and the list the reason comes from."""


class ContactChannel(StrEnum):
    """How a rep contacted a lead (the channel an activity `contacted` must give)."""

    CALL = "call"
    EMAIL = "email"
    MEETING = "meeting"


_OPEN = frozenset(set(LeadStage) - {LeadStage.WON, LeadStage.LOST, LeadStage.REJECTED})
_NOT_YET_ACCEPTED = frozenset({LeadStage.LEAD, LeadStage.MQL, LeadStage.RECYCLED, LeadStage.NURTURE})

# Rep activity: (the stages it may happen in, the stage it leads to; None keeps the stage).
_REP_ACTIVITY: dict[ActivityType, tuple[frozenset[LeadStage], LeadStage | None]] = {
    ActivityType.ACCEPTED: (_NOT_YET_ACCEPTED, LeadStage.SAL),
    ActivityType.REJECTED: (_NOT_YET_ACCEPTED | {LeadStage.SAL}, LeadStage.REJECTED),
    ActivityType.CONTACTED: (_OPEN, None),
    ActivityType.QUALIFIED: (frozenset({LeadStage.SAL}), LeadStage.SQL),
    ActivityType.OPPORTUNITY_CREATED: (frozenset({LeadStage.SQL}), LeadStage.OPPORTUNITY),
    ActivityType.WON: (frozenset({LeadStage.OPPORTUNITY}), LeadStage.WON),
    ActivityType.LOST: (frozenset({LeadStage.SQL, LeadStage.OPPORTUNITY}), LeadStage.LOST),
    ActivityType.RECYCLED: (
        frozenset({LeadStage.MQL, LeadStage.SAL, LeadStage.SQL, LeadStage.REJECTED, LeadStage.LOST}),
        LeadStage.RECYCLED,
    ),
    ActivityType.NURTURE: (
        frozenset({LeadStage.LEAD, LeadStage.MQL, LeadStage.RECYCLED, LeadStage.REJECTED, LeadStage.LOST}),
        LeadStage.NURTURE,
    ),
}


def _transitions() -> dict[tuple[LeadStage, ActivityType], LeadStage]:
    table: dict[tuple[LeadStage, ActivityType], LeadStage] = {}
    for activity, (sources, target) in _REP_ACTIVITY.items():
        for stage in sources:
            table[stage, activity] = target or stage
    for activity in ENGAGEMENT_ACTIVITIES:
        for stage in LeadStage:
            table[stage, activity] = stage
    return table


TRANSITIONS: dict[tuple[LeadStage, ActivityType], LeadStage] = _transitions()
"""The lifecycle state machine: (current stage, activity) -> new stage; a pair not here is not allowed."""


class InvalidTransition(ValueError):
    """An activity that cannot happen to a lead in its current stage."""

    def __init__(self, stage: LeadStage, activity: ActivityType) -> None:
        super().__init__(f"{activity.value} is not allowed in stage {stage.value}")
        self.stage = stage
        self.activity = activity


def next_stage(stage: LeadStage, activity: ActivityType) -> LeadStage:
    """The stage a lead moves to when `activity` happens in `stage`; raises InvalidTransition."""
    try:
        return TRANSITIONS[stage, activity]
    except KeyError:
        raise InvalidTransition(stage, activity) from None


def transition_table_markdown() -> str:
    """`TRANSITIONS` as a Markdown table: a row per stage, a column per activity (docs/lifecycle.md prints it)."""
    activities = list(ActivityType)
    lines = [
        "| stage \\ activity | " + " | ".join(f"`{activity.value}`" for activity in activities) + " |",
        "|---|" + "---|" * len(activities),
    ]
    for stage in LeadStage:
        cells = []
        for activity in activities:
            target = TRANSITIONS.get((stage, activity))
            cells.append("·" if target is None else ("=" if target == stage else f"**{target.value}**"))
        lines.append(f"| `{stage.value}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


class SlaState(StrEnum):
    """Where an SLA obligation stands: an sla-monitor timer's status, and a lead's `sla_state` in intake."""

    RUNNING = "running"
    WARNING = "warning"
    BREACHED = "breached"
    MET = "met"
    CANCELLED = "cancelled"


def stage_column() -> sa.Column[LeadStage]:
    """A VARCHAR column holding stage values (no database enum type to migrate) read back as LeadStage."""
    return sa.Column(
        sa.Enum(
            LeadStage, native_enum=False, length=20, values_callable=lambda stages: [stage.value for stage in stages]
        ),
        nullable=False,
    )
