"""The SLA policy document (agreement kind `sla`): obligations by grade, source and team, on wall or business clocks.

docs/sla.md documents the format with a complete example (`EXAMPLE`, also deploy/demo/sla.yaml's shape).
"""

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema

from leadrelay.agreements import AgreementKind, DocumentError, all_of, unique_names
from leadrelay.apikeys import Scope, Team
from leadrelay.events import EscalationStep, SlaClock
from leadrelay.stages import ActivityType, LeadStage

MAX_WINDOW_SECONDS = 366 * 24 * 3600
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|bd)\s*$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
GRADE = r"^[A-D][1-4]?$"
"""A grade letter (`A`, every A1-A4) or an exact grade (`A1`), as scoring grades leads."""


class Duration(BaseModel):
    """A window as written (`15m`, `4h`, `3bd`, or seconds): `bd` is a business day of `hours_per_business_day`."""

    model_config = ConfigDict(frozen=True)

    amount: float = Field(ge=0, allow_inf_nan=False)
    unit: Literal["s", "m", "h", "d", "bd"]

    def seconds(self, *, hours_per_business_day: float) -> float:
        """The window in seconds of its clock."""
        if self.unit == "bd":
            return self.amount * hours_per_business_day * 3600
        return self.amount * UNIT_SECONDS[self.unit]

    def __str__(self) -> str:
        # Never exponent notation (`1e+06s`): what is written must parse back.
        amount = str(int(self.amount)) if self.amount.is_integer() else repr(self.amount)
        return f"{amount}{self.unit}"


def parse_duration(value: Any) -> Any:
    """`15m` -> Duration(15, m); an int or float is seconds; anything else is left for pydantic to refuse."""
    if isinstance(value, Duration | dict):
        return value
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text like 15m, 4h, 3bd")
    if isinstance(value, int | float):
        return Duration(amount=float(value), unit="s")
    if isinstance(value, str):
        match = DURATION.match(value)
        if match:
            return Duration(amount=float(match.group(1)), unit=match.group(2))
    raise ValueError("a duration is a number of seconds or text like 15m, 4h, 3bd (units s, m, h, d, bd)")


Window = Annotated[
    Duration,
    BeforeValidator(parse_duration),
    # Stored and shown as written (`15m`), never as the parsed object.
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string", "pattern": DURATION.pattern}, {"type": "number", "exclusiveMinimum": 0}],
            "description": "`15m`, `4h`, `3bd` (business days), or a number of seconds.",
            "examples": ["15m", "4h", "3bd"],
        }
    ),
]
Grade = Annotated[str, Field(pattern=GRADE, examples=["A", "B2"])]
Name = Annotated[str, Field(min_length=1, max_length=100)]


class LeadMatch(BaseModel):
    """Which leads a target applies to; an omitted list matches every lead."""

    model_config = ConfigDict(extra="forbid")

    grades: list[Grade] | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="Grades (`A1`) or grade letters (`A` matches A1-A4); a lead without a grade never matches.",
    )
    sources: list[Name] | None = Field(default=None, min_length=1, max_length=100, description="The lead's source.")
    teams: list[Name] | None = Field(
        default=None, min_length=1, max_length=100, description="The owning team's id (router's teams)."
    )

    def covers(self, other: "LeadMatch") -> bool:
        """Whether every lead `other` matches is matched here too (so a later `other` could never apply)."""
        return (
            _covers(self.grades, other.grades, grades=True)
            and _covers(self.sources, other.sources)
            and _covers(self.teams, other.teams)
        )


def _covers(mine: list[str] | None, theirs: list[str] | None, *, grades: bool = False) -> bool:
    if mine is None:
        return True
    if theirs is None:
        return False
    return all(value in mine or (grades and value[:1] in mine) for value in theirs)


class Target(BaseModel):
    """A window for the leads `when` matches; an obligation's first matching target applies."""

    model_config = ConfigDict(extra="forbid")

    when: LeadMatch = Field(default_factory=LeadMatch)
    within: Window
    clock: SlaClock | None = Field(default=None, description="Overrides the obligation's clock for these leads.")


class Obligation(BaseModel):
    """Something sales owes a lead once it is assigned, met by the first matching activity."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=50, pattern=r"^[a-z][a-z0-9_]*$")
    description: str | None = Field(default=None, max_length=500)
    met_by: list[ActivityType] = Field(min_length=1, max_length=len(ActivityType))
    clock: SlaClock = SlaClock.BUSINESS
    targets: list[Target] = Field(min_length=1, max_length=100)
    warn_at: float | None = Field(
        default=0.8, gt=0, lt=1, description="Warn when this share of the window has passed; null for no warning."
    )
    escalation: list[EscalationStep] = Field(default_factory=list, max_length=len(EscalationStep))
    on_reassignment: str = Field(
        default="restart",
        pattern="^(restart|keep)$",
        description="`restart`: the new owner gets a whole new window; `keep`: the deadline carries over.",
    )
    stages: list[LeadStage] = Field(
        default_factory=lambda: [LeadStage.LEAD, LeadStage.MQL, LeadStage.SAL],
        min_length=1,
        description="Where the obligation applies: a lead moving to any other stage cancels it.",
    )


class SlaDocument(BaseModel):
    """The obligations sales accepts for the leads marketing hands over."""

    model_config = ConfigDict(extra="forbid")

    hours_per_business_day: float = Field(default=8, gt=0, le=24)
    obligations: list[Obligation] = Field(min_length=1, max_length=50)


def check(document: SlaDocument) -> list[DocumentError]:
    """Names unique; rep actions; steps once; every target reachable; windows within a year; `bd` on business clocks."""
    errors = list(unique_names([obligation.name for obligation in document.obligations], at="/obligations"))
    for index, obligation in enumerate(document.obligations):
        base = f"/obligations/{index}"
        for activity_index, activity in enumerate(obligation.met_by):
            if activity.is_engagement:
                errors.append(
                    (f"{base}/met_by/{activity_index}", f"{activity} is the lead's engagement, not a rep's action")
                )
            elif activity in obligation.met_by[:activity_index]:
                errors.append((f"{base}/met_by/{activity_index}", f"{activity} is listed twice"))
        for step_index, step in enumerate(obligation.escalation):
            if step in obligation.escalation[:step_index]:
                errors.append(
                    (f"{base}/escalation/{step_index}", f"{step} is listed twice: a ladder has each step once")
                )
        for target_index, target in enumerate(obligation.targets):
            earlier = next(
                (i for i, t in enumerate(obligation.targets[:target_index]) if t.when.covers(target.when)), None
            )
            if earlier is not None:
                errors.append(
                    (
                        f"{base}/targets/{target_index}/when",
                        f"never matches: target {earlier} matches every lead this one does (the first match wins)",
                    )
                )
            at = f"/obligations/{index}/targets/{target_index}/within"
            clock = target.clock or obligation.clock
            if target.within.unit == "bd" and clock is not SlaClock.BUSINESS:
                errors.append((at, "business days (bd) need a business clock"))
            seconds = target.within.seconds(hours_per_business_day=document.hours_per_business_day)
            if not 0 < seconds <= MAX_WINDOW_SECONDS:
                errors.append((at, "a window is more than 0 seconds and at most a year"))
    return errors


EXAMPLE: dict[str, Any] = {
    "hours_per_business_day": 8,
    "obligations": [
        {
            "name": "accept",
            "description": "Sales accepts (SAL) or rejects the lead.",
            "met_by": ["accepted", "rejected"],
            "clock": "wall",
            "targets": [{"within": "15m"}],
            "warn_at": 0.8,
            "escalation": ["remind", "reassign"],
            "on_reassignment": "restart",
            "stages": ["lead", "mql"],
        },
        {
            "name": "first_touch",
            "description": "A call, an email or a meeting.",
            "met_by": ["contacted"],
            "clock": "business",
            "targets": [
                {"when": {"grades": ["A"]}, "within": "30m", "clock": "wall"},
                {"when": {"grades": ["B"]}, "within": "4h"},
                {"within": "1bd"},
            ],
            "warn_at": 0.8,
            "escalation": ["remind", "reassign", "notify_manager"],
            "on_reassignment": "restart",
            "stages": ["lead", "mql", "sal"],
        },
        {
            "name": "disposition",
            "description": "Qualified or rejected.",
            "met_by": ["qualified", "rejected"],
            "clock": "business",
            "targets": [{"within": "3bd"}],
            "warn_at": 0.8,
            "escalation": ["notify_manager"],
            "on_reassignment": "keep",
            "stages": ["lead", "mql", "sal"],
        },
    ],
}
"""The complete documented example (docs/sla.md)."""

SLA = AgreementKind(
    name="sla",
    title="SLA policy",
    document=SlaDocument,
    check=check,
    approval=all_of(Team.MARKETING, Team.SALES),
    source="leadrelay/sla-monitor",
    example=EXAMPLE,
    read_scopes=(Scope.SLA_READ,),
    write_scopes=(Scope.SLA_WRITE,),
    approve_scopes=(Scope.SLA_APPROVE,),
)
