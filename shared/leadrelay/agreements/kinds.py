"""What a service plugs in to own a kind of agreement: its document schema, checks, sign-off rule and scopes."""

from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.apikeys import Scope, Team

DocT = TypeVar("DocT", bound=BaseModel)

DocumentError = tuple[str, str]
"""A JSON pointer into the document (`/criteria/0/points`) and what is wrong there."""


class Quorum(StrEnum):
    """How the required teams combine."""

    ALL_OF = "all_of"
    ANY_OF = "any_of"


@dataclass(frozen=True)
class ApprovalRule:
    """Which teams must approve a version before it becomes active."""

    quorum: Quorum
    teams: tuple[Team, ...]

    def satisfied_by(self, approved: Collection[str]) -> bool:
        """Whether approvals from these teams are enough."""
        signed = [team for team in self.teams if team in approved]
        return len(signed) == len(self.teams) if self.quorum is Quorum.ALL_OF else bool(signed)

    def as_json(self) -> dict[str, list[str]]:
        """`{"all_of": [...]}` or `{"any_of": [...]}`, as versions show it."""
        return {self.quorum.value: [team.value for team in self.teams]}


def all_of(*teams: Team) -> ApprovalRule:
    """Every one of these teams must approve."""
    return ApprovalRule(Quorum.ALL_OF, teams)


def any_of(*teams: Team) -> ApprovalRule:
    """One approval from any of these teams is enough."""
    return ApprovalRule(Quorum.ANY_OF, teams)


@dataclass(frozen=True)
class AgreementKind(Generic[DocT]):
    """One kind of agreement (`icp`, `routing`, `sla`), owned and served by one service.

    `check` is the semantic validator: it takes a structurally valid document and answers every
    problem as (JSON pointer into the document, message); an empty list means the document may
    be drafted. Scopes left empty mean "any valid key".
    """

    name: str
    title: str
    document: type[DocT]
    check: Callable[[DocT], list[DocumentError]]
    approval: ApprovalRule
    source: str
    example: dict[str, Any]
    read_scopes: tuple[Scope, ...] = ()
    write_scopes: tuple[Scope, ...] = ()
    approve_scopes: tuple[Scope, ...] = ()
    check_stored: Callable[[AsyncSession, DocT], Awaitable[list[DocumentError]]] | None = None
    """Checks against the owning service's data (names the document uses must exist), at draft time after `check`."""


def unique_names(names: Sequence[str], *, at: str) -> list[DocumentError]:
    """An error at `{at}/{index}/name` for every name already used earlier in the list."""
    first: dict[str, int] = {}
    errors = []
    for index, name in enumerate(names):
        if name in first:
            errors.append((f"{at}/{index}/name", f"duplicate name {name!r} (already used at {at}/{first[name]})"))
        first.setdefault(name, index)
    return errors
