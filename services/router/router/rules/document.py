"""PROVISIONAL routing document schema: the router issue replaces it with the full rules format."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from leadrelay.agreements import AgreementKind, DocumentError, any_of, unique_names
from leadrelay.apikeys import Scope, Team

Text = Annotated[str, Field(min_length=1, max_length=200)]


class RoutingCondition(BaseModel):
    """A lead field equal to a value, or one of several."""

    model_config = ConfigDict(extra="forbid")

    field: str = Field(min_length=1, max_length=100)
    equals: Text | None = None
    in_: list[Text] | None = Field(default=None, alias="in", min_length=1, max_length=200)


class RoutingAssignment(BaseModel):
    """Where a matching lead goes: one named rep, or a team queue."""

    model_config = ConfigDict(extra="forbid")

    rep: Text | None = None
    queue: Text | None = None


class RoutingRule(BaseModel):
    """A first-match rule; `when: null` matches every lead (the catch-all)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    when: RoutingCondition | None
    assign: RoutingAssignment


class RoutingDocument(BaseModel):
    """Ordered rules, the first match wins (provisional format)."""

    model_config = ConfigDict(extra="forbid")

    rules: list[RoutingRule] = Field(max_length=1000)


def check(document: RoutingDocument) -> list[DocumentError]:
    """Names unique, one of `equals`/`in` and one of `rep`/`queue`, and the last rule (only) a catch-all."""
    rules = document.rules
    if not rules:
        return [("/rules", "at least one rule is needed: the last one a catch-all (when: null)")]
    errors = unique_names([rule.name for rule in rules], at="/rules")
    last = len(rules) - 1
    for index, rule in enumerate(rules):
        where = f"/rules/{index}"
        if rule.when is None and index != last:
            errors.append((f"{where}/when", "only the last rule may be a catch-all (when: null)"))
        if rule.when is not None:
            if index == last:
                errors.append((f"{where}/when", "the last rule must be a catch-all (when: null)"))
            if (rule.when.equals is None) == (rule.when.in_ is None):
                errors.append((f"{where}/when", "give exactly one of equals or in"))
        if (rule.assign.rep is None) == (rule.assign.queue is None):
            errors.append((f"{where}/assign", "give exactly one of rep or queue"))
    return errors


EXAMPLE = {
    "rules": [
        {"name": "dach", "when": {"field": "country", "in": ["DE", "AT", "CH"]}, "assign": {"rep": "rep-anna"}},
        {"name": "partners", "when": {"field": "source", "equals": "partner"}, "assign": {"queue": "partners"}},
        {"name": "everyone_else", "when": None, "assign": {"queue": "inbound"}},
    ]
}

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
)
