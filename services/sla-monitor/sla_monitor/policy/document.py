"""PROVISIONAL SLA document schema: the SLA issue replaces it with the full policy format."""

from pydantic import BaseModel, ConfigDict, Field

from leadrelay.agreements import AgreementKind, DocumentError, all_of, unique_names
from leadrelay.apikeys import Scope, Team


class SlaObligation(BaseModel):
    """Something sales owes a lead within a time, with a warning at a share of that time."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    within_seconds: int = Field(gt=0, le=366 * 24 * 3600)
    warn_at: float = Field(gt=0, lt=1, description="Warn when this share of the time has passed, e.g. 0.8.")


class SlaDocument(BaseModel):
    """The obligations sales accepts (provisional format)."""

    model_config = ConfigDict(extra="forbid")

    obligations: list[SlaObligation] = Field(max_length=200)


def check(document: SlaDocument) -> list[DocumentError]:
    """At least one obligation, names unique."""
    if not document.obligations:
        return [("/obligations", "at least one obligation is needed")]
    return unique_names([obligation.name for obligation in document.obligations], at="/obligations")


EXAMPLE = {
    "obligations": [
        {"name": "accept", "within_seconds": 900, "warn_at": 0.8},
        {"name": "first_touch", "within_seconds": 1800, "warn_at": 0.8},
    ]
}

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
