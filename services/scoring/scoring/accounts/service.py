"""The account book and lead-to-account matching.

CONTRACT (issue 8): the scores pipeline calls only `apply_changes`, `match_many` and `enrich`, and
reads `MatchedAccount`; the account-book work replaces the bodies below, keeping these names and
signatures.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.events import AccountChanged, AccountMatch, LeadReceived


@dataclass(frozen=True)
class MatchedAccount:
    """A lead's account: the match (id, method, confidence, owner) and the account's fields."""

    match: AccountMatch
    fields: Mapping[str, Any]
    """`name`, `domains`, `industry`, `employees`, `annual_revenue`, `country`, `owner_rep_id`, `crm_id`."""


async def apply_changes(*, session: AsyncSession, changes: Sequence[AccountChanged]) -> None:
    """Store accounts (newest version wins; an older change arriving late changes nothing)."""
    del session, changes


async def match_many(*, session: AsyncSession, leads: Sequence[LeadReceived]) -> list[MatchedAccount | None]:
    """Each lead's account, in order: domain first (never a free-mail domain), then company name."""
    del session
    return [None for _ in leads]


def enrich(facts: Mapping[str, Any], matched: MatchedAccount | None) -> tuple[dict[str, Any], list[str]]:
    """The facts with the account's firmographics filling what the lead lacks, and which fields were filled."""
    filled = dict(facts)
    if matched is None:
        return filled, []
    filled["account"] = dict(matched.fields)
    return filled, []
