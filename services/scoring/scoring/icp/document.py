"""PROVISIONAL ICP document schema: the scoring issue replaces it with the full ICP format."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from leadrelay.agreements import AgreementKind, DocumentError, all_of, unique_names
from leadrelay.apikeys import Scope, Team

Text = Annotated[str, Field(min_length=1, max_length=200)]


class IcpCriterion(BaseModel):
    """Points for leads whose `field` equals a value or is one of several."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    field: str = Field(min_length=1, max_length=100, description="A lead field, e.g. `country` or `source`.")
    equals: Text | None = None
    in_: list[Text] | None = Field(default=None, alias="in", min_length=1, max_length=200)
    points: int = Field(ge=-100, le=100)


class IcpDocument(BaseModel):
    """Criteria and the score at which a lead is an MQL (provisional format)."""

    model_config = ConfigDict(extra="forbid")

    criteria: list[IcpCriterion] = Field(max_length=500)
    mql_threshold: int = Field(ge=0, le=100)


def check(document: IcpDocument) -> list[DocumentError]:
    """Names unique, exactly one of `equals`/`in` per criterion, a threshold the points can reach."""
    errors = unique_names([criterion.name for criterion in document.criteria], at="/criteria")
    for index, criterion in enumerate(document.criteria):
        if criterion.equals is not None and criterion.in_ is not None:
            errors.append((f"/criteria/{index}/in", "give either equals or in, not both"))
        elif criterion.equals is None and criterion.in_ is None:
            errors.append((f"/criteria/{index}", "give one of equals or in"))
    reachable = sum(criterion.points for criterion in document.criteria if criterion.points > 0)
    if document.mql_threshold > reachable:
        errors.append(("/mql_threshold", f"unreachable: the positive points of all criteria add up to {reachable}"))
    return errors


EXAMPLE = {
    "criteria": [
        {"name": "target_country", "field": "country", "in": ["GB", "DE", "FR"], "points": 30},
        {"name": "webinar_lead", "field": "source", "equals": "webinar", "points": 40},
        {"name": "students", "field": "job_title", "equals": "Student", "points": -50},
    ],
    "mql_threshold": 60,
}

ICP = AgreementKind(
    name="icp",
    title="Ideal Customer Profile",
    document=IcpDocument,
    check=check,
    approval=all_of(Team.MARKETING, Team.SALES),
    source="leadrelay/scoring",
    example=EXAMPLE,
    read_scopes=(),
    write_scopes=(Scope.ICP_WRITE,),
    approve_scopes=(Scope.ICP_APPROVE,),
)
