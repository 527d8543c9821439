"""The routing rules agreement (kind `routing`): router owns it; sales or ops approve it.

Ordered first-match rules, each a condition (`when`), an action and a fallback (`otherwise`) for
when nobody in the action is available. Pydantic checks the structure (unknown keys refused);
`check` refuses everything else an engine could not evaluate, each problem at the JSON pointer of
the field at fault. docs/routing.md is the reader's guide to this format.
"""

from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    field_serializer,
    model_validator,
)
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.agreements import AgreementKind, DocumentError, any_of, unique_names
from leadrelay.apikeys import Scope, Team
from leadrelay.validation import Location, relocating_errors
from router.fairness.rotation import Strategy
from router.reps.models import Rep as RepRow
from router.rules.conditions import Condition, check_condition, requires
from router.teams.models import Team as TeamRow

Name = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^\S(.*\S)?$")]
Id = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^\S+$", examples=["rep-ada", "team-emea"])]
Text = Annotated[str, Field(min_length=1, max_length=200)]

MAX_RULES = 1000
MAX_FALLBACKS = 3
"""How long a fallback chain may be (a fallback's fallback's fallback): a longer one hides a staffing problem."""


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid")

    otherwise: "Action | None" = Field(
        default=None, description="Only inside a rule's `otherwise`: the fallback of this fallback."
    )


class AccountOwnerAction(_Action):
    """The owner of the account the lead matched (`account.owner_rep_id`)."""

    type: Literal["account_owner"]


class PoolAction(_Action):
    """One of the listed reps, picked by `strategy`."""

    type: Literal["pool"]
    reps: list[Id] = Field(min_length=1, max_length=500)
    strategy: Strategy = Strategy.WEIGHTED_ROUND_ROBIN


class TeamAction(_Action):
    """One of the team's active reps, picked by `strategy`."""

    type: Literal["team"]
    team: Id
    strategy: Strategy = Strategy.WEIGHTED_ROUND_ROBIN


class RepAction(_Action):
    """One named rep."""

    type: Literal["rep"]
    rep: Id


class QueueAction(_Action):
    """The team's queue, for a rep of the team to pick up by hand: always available."""

    type: Literal["queue"]
    team: Id


class NurtureAction(_Action):
    """Back to marketing: never for an MQL; always available."""

    type: Literal["nurture"]
    reason: Text | None = None


Action = Annotated[
    AccountOwnerAction | PoolAction | TeamAction | RepAction | QueueAction | NurtureAction,
    Field(discriminator="type"),
]

TERMINAL = (QueueAction, NurtureAction)
"""Actions that always take the lead, so they need (and take) no fallback."""


def _always(value: Any) -> Any:
    return None if value == "always" else value


class Rule(BaseModel):
    """A first-match rule: `when` the condition holds, `action`; `otherwise` when nobody in the action is available."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    when: Annotated[Condition | None, BeforeValidator(_always)] = Field(
        default=None,
        description='The condition; `"always"` (or left out) for the catch-all, which must be the last rule.',
        examples=["always", {"field": "lead.country", "in": ["DE", "AT", "CH"]}],
    )
    action: Action
    otherwise: Action | None = None

    @field_serializer("when")
    def _when_always(self, when: Condition | None) -> Any:
        return "always" if when is None else when.model_dump(mode="json", by_alias=True, exclude_unset=True)


class RoutingDocument(BaseModel):
    """Ordered rules: the first that matches a lead routes it; the last is a catch-all."""

    model_config = ConfigDict(extra="forbid")

    rules: list[Rule] = Field(max_length=MAX_RULES)

    @model_validator(mode="wrap")
    @classmethod
    def _pointers_without_union_tags(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        return relocating_errors(handler, data, _without_tags)


_TAGS = frozenset({"account_owner", "pool", "team", "rep", "queue", "nurture"})


def _without_tags(location: Location) -> Location:
    kept: list[int | str] = []
    for index, part in enumerate(location):
        if part in _TAGS and index > 0 and location[index - 1] in ("action", "otherwise"):
            continue
        kept.append(part)
    return tuple(kept)


def chain(rule: Rule) -> list[Action]:
    """The rule's fallbacks in order: `otherwise`, its `otherwise`, ..."""
    found: list[Action] = []
    step = rule.otherwise
    while step is not None:
        found.append(step)
        step = step.otherwise
    return found


def check(document: RoutingDocument) -> list[DocumentError]:
    """Every reason the rules could not route every lead, each at its JSON pointer."""
    rules = document.rules
    if not rules:
        return [("/rules", 'at least one rule is needed: the last one a catch-all (when: "always")')]
    errors = unique_names([rule.name for rule in rules], at="/rules")
    last = len(rules) - 1
    for index, rule in enumerate(rules):
        at = f"/rules/{index}"
        if rule.when is None and index != last:
            errors.append((f"{at}/when", f"only the last rule may be a catch-all: rules after it ({last - index}) "
                           "could never match"))  # fmt: skip
        if rule.when is not None:
            if index == last:
                errors.append((f"{at}/when", 'the last rule must be a catch-all (when: "always")'))
            errors += check_condition(rule.when, at=f"{at}/when")
        errors += _check_actions(rule, at=at, catch_all=rule.when is None)
    return errors


def _check_actions(rule: Rule, *, at: str, catch_all: bool) -> list[DocumentError]:
    errors: list[DocumentError] = []
    action = rule.action
    if action.otherwise is not None:
        errors.append((f"{at}/action/otherwise", "a rule's fallback is its own `otherwise`, beside `action`"))
    if isinstance(action, NurtureAction):
        if catch_all:
            errors.append((f"{at}/action", "the catch-all takes every lead, and nurture never takes an MQL: "
                           "route the catch-all to sales (a queue, a team, ...)"))  # fmt: skip
        elif requires(rule.when, "score.mql", True):
            errors.append((f"{at}/action", "this rule only matches MQLs, and nurture never takes an MQL"))
    steps = [(action, f"{at}/action")]
    where = f"{at}/otherwise"
    for step in chain(rule):
        steps.append((step, where))
        where = f"{where}/otherwise"
    for number, (step, pointer) in enumerate(steps):
        terminal = isinstance(step, TERMINAL)
        follows = steps[number + 1][1] if number + 1 < len(steps) else None
        if terminal and follows is not None:
            errors.append((follows, f"a {step.type} always takes the lead: nothing after it is ever used"))
            break
        if not terminal and follows is None:
            fallback = f"{at}/otherwise" if number == 0 else f"{pointer}/otherwise"
            errors.append((fallback, f"a {step.type} may find nobody available: name a fallback "
                           "(a queue always takes the lead)"))  # fmt: skip
            break
        if number > MAX_FALLBACKS:
            errors.append((pointer, f"at most {MAX_FALLBACKS} fallbacks in a chain"))
            break
        if number > 0 and isinstance(step, NurtureAction) and not requires(rule.when, "score.mql", False):
            errors.append((pointer, "nurture is a fallback only in a rule whose condition requires "
                           "score.mql false: an MQL must reach sales"))  # fmt: skip
    return errors


async def check_named(session: AsyncSession, document: RoutingDocument) -> list[DocumentError]:
    """Every team and rep the rules name that router does not know, each at its JSON pointer (at draft time)."""
    named: list[tuple[str, str, str]] = []  # (pointer, "team" | "rep", id)
    for index, rule in enumerate(document.rules):
        steps = [(rule.action, f"/rules/{index}/action")]
        where = f"/rules/{index}/otherwise"
        for step in chain(rule):
            steps.append((step, where))
            where = f"{where}/otherwise"
        for step, pointer in steps:
            if isinstance(step, TeamAction | QueueAction):
                named.append((f"{pointer}/team", "team", step.team))
            elif isinstance(step, RepAction):
                named.append((f"{pointer}/rep", "rep", step.rep))
            elif isinstance(step, PoolAction):
                named += [(f"{pointer}/reps/{number}", "rep", rep) for number, rep in enumerate(step.reps)]
    wanted_teams = list({name for _, kind, name in named if kind == "team"})
    wanted_reps = list({name for _, kind, name in named if kind == "rep"})
    known = {
        "team": set((await session.exec(select(TeamRow.id).where(col(TeamRow.id).in_(wanted_teams)))).all()),
        "rep": set((await session.exec(select(RepRow.id).where(col(RepRow.id).in_(wanted_reps)))).all()),
    }
    return [
        (pointer, f"no {kind} {name!r}: create it first (PUT /v1/{kind}s/{{id}})")
        for pointer, kind, name in named
        if name not in known[kind]
    ]


EXAMPLE: dict[str, Any] = {
    "rules": [
        {"name": "enterprise_accounts", "when": {"all": [
            {"field": "account.owner_rep_id", "exists": True},
            {"field": "lead.employees", "range": {"min": 1000}}]},
         "action": {"type": "account_owner"},
         "otherwise": {"type": "team", "team": "team-na", "strategy": "least_loaded",
                       "otherwise": {"type": "queue", "team": "team-na"}}},
        {"name": "nurture_weak_fit", "when": {"all": [
            {"field": "score.mql", "equals": False},
            {"field": "score.fit_grade", "in": ["C", "D"]}]},
         "action": {"type": "nurture", "reason": "not an MQL, and a weak fit"}},
        {"name": "trade_show_follow_up", "when": {"field": "lead.source", "equals": "trade-show"},
         "action": {"type": "queue", "team": "team-emea"}},
        {"name": "us_referrals", "when": {"all": [
            {"field": "lead.country", "equals": "US"},
            {"field": "lead.source", "in": ["referral", "webinar"]},
            {"not": {"field": "lead.job_title", "regex": r"\b(student|intern)\b"}}]},
         "action": {"type": "rep", "rep": "rep-grace"},
         "otherwise": {"type": "team", "team": "team-na", "strategy": "least_loaded",
                       "otherwise": {"type": "queue", "team": "team-na"}}},
        {"name": "emea", "when": {"any": [
            {"field": "lead.country", "in": ["GB", "DE", "FR", "NL"]},
            {"field": "lead.email_domain", "regex": r"\.(uk|de|fr|nl)$"}]},
         "action": {"type": "team", "team": "team-emea", "strategy": "weighted_round_robin"},
         "otherwise": {"type": "queue", "team": "team-emea"}},
        {"name": "everyone_else", "when": "always",
         "action": {"type": "pool", "reps": ["rep-grace", "rep-alan"], "strategy": "weighted_round_robin"},
         "otherwise": {"type": "queue", "team": "team-na"}},
    ]
}  # fmt: skip
"""The complete documented example (docs/routing.md), also the demo ruleset (deploy/demo/routing.yaml)."""

ROUTING = AgreementKind(
    name="routing",
    title="routing rules",
    document=RoutingDocument,
    check=check,
    approval=any_of(Team.SALES, Team.OPS),
    source="leadrelay/router",
    example=EXAMPLE,
    read_scopes=(Scope.ROUTING_READ,),
    write_scopes=(Scope.ROUTING_WRITE,),
    approve_scopes=(Scope.ROUTING_WRITE,),
    check_stored=check_named,
)
