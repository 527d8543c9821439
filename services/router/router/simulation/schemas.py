"""What simulate takes and answers, and what replay answers."""

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    ModelWrapValidatorHandler,
    Tag,
    create_model,
    model_validator,
)

from leadrelay.events import AccountMatch, LeadReceived, LeadScored
from leadrelay.stages import LeadStage
from leadrelay.validation import Location, relocating_errors
from router.rules.document import EXAMPLE, RoutingDocument

MAX_LEADS = 1000
EXAMPLE_LEAD_ID = "5f0c2a0e-8d1c-4f4e-9a57-2f1f9f0c1d2e"


class StrictLeadReceived(LeadReceived):
    """A lead.received payload as a client sends it: unknown fields refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ScoredLead(LeadScored):
    """A lead.scored payload as a client sends it (the event's `data`): unknown fields refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lead: StrictLeadReceived


_SKETCHED = {name: info for name, info in LeadReceived.model_fields.items() if name not in ("lead_id", "redrive")}

_OPTIONAL: dict[str, Any] = {name: (info.annotation | None, None) for name, info in _SKETCHED.items()}  # type: ignore[operator]
LeadFields = create_model(
    "LeadFields",
    __config__=ConfigDict(extra="forbid"),
    __doc__="A lead's fields as lead.received names them, every one optional.",
    **_OPTIONAL,
)


class ScoreFields(BaseModel):
    """The score a rule may read, every part optional."""

    model_config = ConfigDict(extra="forbid")

    score: int = Field(default=0, ge=0, le=100)
    fit: int = 0
    engagement: int = 0
    grade: str | None = Field(default=None, pattern="^[A-D][1-4]$", examples=["A1"])
    mql: bool = False
    became_mql: bool = False
    disqualified: str | None = None
    stage: LeadStage | None = Field(default=None, description="Default: `mql` for an MQL, else `lead`.")
    icp_version: str | None = None


class LeadSketch(BaseModel):
    """A lead in the short form: its fields, its score and its account, each part optional."""

    model_config = ConfigDict(extra="forbid")

    lead_id: str | None = Field(default=None, min_length=1, max_length=36,
                                description="Default: `lead-N`, N its place in `leads` from 1.")  # fmt: skip
    lead: LeadFields = Field(default_factory=LeadFields)
    score: ScoreFields
    account: AccountMatch | None = None

    def scored(self, *, lead_id: str, at: datetime) -> LeadScored:
        """The lead.scored this sketch stands for; a field left out has no value for the rules."""
        given = self.lead.model_dump(exclude_none=True)
        lead_values: dict[str, Any] = {
            name: None if info.is_required() else info.get_default(call_default_factory=True)
            for name, info in LeadReceived.model_fields.items()
        }
        lead_values.update(lead_id=lead_id, received_at=at, **given)
        score = self.score
        return LeadScored.model_construct(
            lead_id=lead_id,
            lead=LeadReceived.model_construct(**lead_values),
            score=score.score,
            fit=score.fit,
            engagement=score.engagement,
            grade=score.grade,
            mql=score.mql,
            became_mql=score.became_mql,
            disqualified=score.disqualified,
            stage=score.stage or (LeadStage.MQL if score.mql else LeadStage.LEAD),
            icp_version=score.icp_version,  # type: ignore[arg-type]  # left out: no value for the rules
            explanation=[],
            scored_at=at,
            account=self.account,
        )


def _shape(item: Any) -> str:
    return "sketch" if isinstance(item, dict) and isinstance(item.get("score"), dict) else "scored"


LeadToRoute = Annotated[
    Annotated[ScoredLead, Tag("scored")] | Annotated[LeadSketch, Tag("sketch")],
    Discriminator(_shape),
]

_SCORED_EXAMPLE: dict[str, Any] = {
    "lead_id": EXAMPLE_LEAD_ID,
    "score": 72,
    "stage": "mql",
    "icp_version": "2",
    "explanation": [],
    "scored_at": "2026-11-27T09:30:00Z",
    "fit": 50,
    "engagement": 22,
    "grade": "B2",
    "mql": True,
    "lead": {
        "lead_id": EXAMPLE_LEAD_ID,
        "email": "ada@analytical.example",
        "source": "webinar",
        "country": "DE",
        "employees": 250,
        "received_at": "2026-11-27T09:29:59Z",
    },
}
_SKETCH_EXAMPLE: dict[str, Any] = {
    "lead": {"country": "DE", "source": "webinar", "employees": 250},
    "score": {"score": 72, "grade": "B2", "mql": True},
}


class SimulationRequest(BaseModel):
    """Leads to route with no side effects, under the active ruleset, a stored version or a draft document."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"leads": [_SCORED_EXAMPLE, _SKETCH_EXAMPLE], "document": EXAMPLE}]},
    )

    leads: list[LeadToRoute] = Field(
        min_length=1,
        max_length=MAX_LEADS,
        description="lead.scored payloads (the event's `data`), or the short form `{lead, score, account}` "
        "(an item whose `score` is an object).",
    )
    document: RoutingDocument | None = Field(
        default=None, description="A draft routing document, validated like a new version; stored nowhere."
    )
    version: int | None = Field(default=None, ge=1, description="A stored routing version (any status).")
    at: AwareDatetime | None = Field(
        default=None, description="The instant to route at (working hours, out of office, today's caps); default now."
    )

    @model_validator(mode="wrap")
    @classmethod
    def _pointers_without_shape_tags(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        return relocating_errors(handler, data, _without_shape_tag)


def _without_shape_tag(location: Location) -> Location:
    # The item's shape (`leads/0/scored/lead/email`) is no level of the body.
    if len(location) > 2 and location[0] == "leads" and location[2] in ("scored", "sketch"):
        return (*location[:2], *location[3:])
    return location


class SimulatedRouting(BaseModel):
    """Where one lead would go, and the whole why."""

    lead_id: str
    outcome: str = Field(description="`assigned`, `queued` or `nurtured`.")
    rep_id: str | None
    team_id: str | None
    rule: str = Field(description="The rule that matched.")
    explanation: dict[str, Any] = Field(
        description="As `GET /v1/assignments/{lead_id}` shows it: every rule evaluated, each action tried, every "
        "candidate and why it was or was not chosen (unbounded)."
    )


class Simulation(BaseModel):
    """The leads as the ruleset would route them now (or at `at`); nothing was stored or published."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "version": "draft",
                    "at": "2026-11-27T09:30:00Z",
                    "leads": 1,
                    "routings": [
                        {
                            "lead_id": EXAMPLE_LEAD_ID,
                            "outcome": "assigned",
                            "rep_id": "rep-ada",
                            "team_id": "team-emea",
                            "rule": "emea",
                            "explanation": {
                                "version": "draft",
                                "rule": "emea",
                                "action": {"type": "team", "team": "team-emea",
                                           "strategy": "weighted_round_robin"},
                                "fallbacks": [{"type": "queue", "team": "team-emea"}],
                                "evaluated": [{"rule": "enterprise_accounts", "matched": False,
                                               "at": "/rules/0/when/all/0", "field": "account.owner_rep_id",
                                               "seen": None, "reason": "account.owner_rep_id has no value"},
                                              {"rule": "emea", "matched": True}],
                                "evaluated_omitted": 0,
                                "outcome": "assigned",
                                "rep_id": "rep-ada",
                                "team_id": "team-emea",
                                "steps": [],
                            },
                        }
                    ],
                }
            ]
        }
    )  # fmt: skip

    version: str = Field(description="The ruleset routed under: its version number, `draft` or `builtin`.")
    at: datetime
    leads: int
    routings: list[SimulatedRouting] = Field(description="One per lead, in the order sent.")


class Placement(BaseModel):
    """Where a lead went (before) or would go (after)."""

    outcome: str
    rep_id: str | None
    team_id: str | None
    rule: str | None


class Shift(BaseModel):
    """Leads before (their actual first assignments) and after (replayed under the version)."""

    before: int = 0
    after: int = 0


class TeamShift(Shift):
    """A team's leads before and after: assigned to its reps or queued for it."""

    team_id: str


class RepShift(Shift):
    """A rep's leads before and after."""

    rep_id: str


class ChangedLead(BaseModel):
    """A lead the version would send elsewhere."""

    lead_id: str
    before: Placement
    after: Placement


_PLACED: dict[str, Any] = {"outcome": "assigned", "rep_id": "rep-bob", "team_id": "team-na", "rule": "everyone_else"}


class Replay(BaseModel):
    """The scored leads of the last `days` days routed again under a version, against their first assignments."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "version": 4,
                    "days": 30,
                    "since": "2026-10-28T09:30:00Z",
                    "leads": 1250,
                    "not_routed_before": 0,
                    "per_team": [{"team_id": "team-emea", "before": 410, "after": 530},
                                 {"team_id": "team-na", "before": 840, "after": 720}],
                    "per_rep": [{"rep_id": "rep-ada", "before": 205, "after": 265},
                                {"rep_id": "rep-bob", "before": 420, "after": 360}],
                    "per_outcome": {"assigned": {"before": 1180, "after": 1180},
                                    "queued": {"before": 70, "after": 70},
                                    "nurtured": {"before": 0, "after": 0}},
                    "changed": 120,
                    "changed_leads": [{"lead_id": EXAMPLE_LEAD_ID, "before": _PLACED,
                                       "after": {"outcome": "assigned", "rep_id": "rep-ada",
                                                 "team_id": "team-emea", "rule": "dach"}}],
                }
            ]
        }
    )  # fmt: skip

    version: int
    days: int
    since: datetime
    leads: int = Field(description="Scored leads replayed (each lead's latest score, scored since `since`).")
    not_routed_before: int = Field(description="Replayed leads without a first assignment (counted after only).")
    per_team: list[TeamShift]
    per_rep: list[RepShift]
    per_outcome: dict[Literal["assigned", "queued", "nurtured"], Shift]
    changed: int = Field(description="Leads whose outcome, rep or team would differ from their first assignment.")
    changed_leads: list[ChangedLead] = Field(description="The first 100 changed leads, oldest score first.")
