"""The account book and lead-to-account matching.

CONTRACT (issue 8): the scores pipeline calls only `apply_changes`, `match_many` and `enrich`, and
reads `MatchedAccount`.
"""

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from rapidfuzz import fuzz, process
from sqlalchemy import bindparam, delete, insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.events import AccountChanged, AccountMatch, LeadReceived, MatchMethod
from scoring.accounts import normalise
from scoring.accounts.models import NAME_KEY_LENGTH, AccountDomain, AccountNameKey, BookAccount

DOMAIN_CONFIDENCE = 1.0
SUBDOMAIN_CONFIDENCE = 0.95
NAME_CONFIDENCE = 0.9
FUZZY_THRESHOLD = 0.85
"""The least name similarity (rapidfuzz token_sort_ratio / 100) a fuzzy match needs."""

ENRICHED_FIELDS = ("industry", "employees", "annual_revenue", "country")
"""Firmographics an account lends a lead that lacks them (and `company`, from the account's name)."""

# Far below both databases' bound-parameter limits, so a large batch never fails on a long IN list.
_IN_CHUNK = 1000

T = TypeVar("T")


@dataclass(frozen=True)
class MatchedAccount:
    """A lead's account: the match (id, method, confidence, owner) and the account's fields."""

    match: AccountMatch
    fields: Mapping[str, Any]
    """`name`, `domains`, `industry`, `employees`, `annual_revenue`, `country`, `owner_rep_id`, `crm_id`."""


def _chunks(values: Iterable[T]) -> Iterator[list[T]]:
    items = list(dict.fromkeys(values))
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]


def _account_domains(change: AccountChanged) -> list[str]:
    hosts = (normalise.domain(value) for value in [*change.domains, *([change.domain] if change.domain else [])])
    return list(dict.fromkeys(host for host in hosts if host))


def _supersedes(change: AccountChanged, *, version: int | None, changed_at: datetime) -> bool:
    # Versions order the changes of one account; the time only when either side has none.
    if change.version is not None and version is not None:
        return change.version > version
    return change.changed_at > changed_at


async def apply_changes(*, session: AsyncSession, changes: Sequence[AccountChanged]) -> None:
    """Store accounts (newest version wins; an older change arriving late changes nothing)."""
    stored: dict[str, BookAccount] = {}
    for ids in _chunks(change.account_id for change in changes):
        rows = await session.exec(select(BookAccount).where(col(BookAccount.id).in_(ids)))
        stored.update((row.id, row) for row in rows)
    newest: dict[str, AccountChanged] = {}
    for change in changes:
        current = newest.get(change.account_id) or stored.get(change.account_id)
        if current is None or _supersedes(change, version=current.version, changed_at=current.changed_at):
            newest[change.account_id] = change
    if not newest:
        return
    domain_rows, key_rows = [], []
    for account_id, change in newest.items():
        domains = _account_domains(change)
        # "&" reads as " and ", so a key can outgrow its name; the column holds what the name's could.
        key = normalise.name_key(change.name)[:NAME_KEY_LENGTH]
        values: dict[str, Any] = {
            "name": change.name,
            "name_key": key,
            "domains": domains,
            "industry": change.industry,
            "employees": change.employees,
            "annual_revenue": change.annual_revenue,
            "country": change.country,
            "owner_rep_id": change.owner_rep_id,
            "crm_id": change.crm_id,
            "version": change.version,
            "changed_at": change.changed_at,
        }
        row = stored.get(account_id)
        if row is None:
            session.add(BookAccount(id=account_id, **values))
        else:
            for name, value in values.items():
                setattr(row, name, value)
            session.add(row)
        domain_rows += [{"domain": domain, "account_id": account_id} for domain in domains]
        key_rows += [
            {"key": block, "account_id": account_id, "name_key": key} for block in sorted(normalise.blocking_keys(key))
        ]
    # The account's domains and keys are replaced whole: a domain the change dropped stops matching.
    for ids in _chunks(newest):
        await session.exec(delete(AccountDomain).where(col(AccountDomain.account_id).in_(ids)))
        await session.exec(delete(AccountNameKey).where(col(AccountNameKey.account_id).in_(ids)))
    connection = await session.connection()
    if domain_rows:
        await connection.execute(insert(AccountDomain), domain_rows)
    if key_rows:
        await connection.execute(insert(AccountNameKey), key_rows)


@dataclass(frozen=True)
class _Candidate:
    account_id: str
    method: MatchMethod
    confidence: float
    rank: int
    """Position of the domain it came from among the lead's (email before website, nearer parent first)."""

    def order(self) -> tuple[float, int, str]:
        return (-self.confidence, self.rank, self.account_id)


def _lead_domains(lead: LeadReceived) -> list[tuple[str, MatchMethod, float]]:
    """The domains a lead's account may hold, best evidence first; never a free-mail provider's."""
    hosts = []
    email_host = normalise.domain(lead.email_domain or lead.email.rpartition("@")[2])
    if email_host and not lead.email_free_mail:
        hosts.append(email_host)
    if lead.website:
        website_host = normalise.website_domain(lead.website)
        if website_host:
            hosts.append(website_host)
    wanted: list[tuple[str, MatchMethod, float]] = []
    for host in dict.fromkeys(hosts):
        if normalise.is_free_mail(host):
            continue
        wanted.append((host, MatchMethod.DOMAIN, DOMAIN_CONFIDENCE))
        wanted += [(parent, MatchMethod.SUBDOMAIN, SUBDOMAIN_CONFIDENCE) for parent in normalise.parent_domains(host)]
    return wanted


# Built once: statements with their values inline would be compiled (and cache-keyed) anew per batch.
_HOLDERS = select(AccountDomain.domain, AccountDomain.account_id).where(
    col(AccountDomain.domain).in_(bindparam("domains", expanding=True))
)
_FIELDS = ("name", "domains", "industry", "employees", "annual_revenue", "country", "owner_rep_id", "crm_id")
_ACCOUNT_FIELDS = select(BookAccount.id, *[getattr(BookAccount, name) for name in _FIELDS]).where(
    col(BookAccount.id).in_(bindparam("ids", expanding=True))
)
_NAMED = select(BookAccount.name_key, BookAccount.id).where(
    col(BookAccount.name_key).in_(bindparam("keys", expanding=True))
)
_BLOCKED = select(AccountNameKey.key, AccountNameKey.account_id, AccountNameKey.name_key).where(
    col(AccountNameKey.key).in_(bindparam("blocks", expanding=True))
)


async def _accounts_by_domain(session: AsyncSession, domains: Iterable[str]) -> dict[str, list[str]]:
    holders: dict[str, list[str]] = defaultdict(list)
    for chunk in _chunks(domains):
        for domain, account_id in await session.exec(_HOLDERS, params={"domains": chunk}):
            holders[domain].append(account_id)
    return holders


async def _fields_by_id(session: AsyncSession, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The matched accounts' fields, read as plain rows: no ORM state is built for a read-only answer."""
    found: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(ids):
        for account_id, *values in await session.exec(_ACCOUNT_FIELDS, params={"ids": chunk}):
            found[account_id] = dict(zip(_FIELDS, values, strict=True))
    return found


async def _accounts_by_name(session: AsyncSession, keys: Iterable[str]) -> dict[str, str]:
    """The lowest account id holding each normalised name."""
    named: dict[str, str] = {}
    for chunk in _chunks(keys):
        for key, account_id in await session.exec(_NAMED, params={"keys": chunk}):
            named[key] = min(account_id, named.get(key, account_id))
    return named


async def _names_by_block(session: AsyncSession, blocks: Iterable[str]) -> dict[str, list[tuple[str, str]]]:
    """(account id, normalised name) of the accounts under each blocking key."""
    blocked: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for chunk in _chunks(blocks):
        for block, account_id, key in await session.exec(_BLOCKED, params={"blocks": chunk}):
            blocked[block].append((account_id, key))
    return blocked


def _fuzzy_best(key: str, candidates: Iterable[tuple[str, str]], threshold: float) -> tuple[str, float] | None:
    """The most similar account (the lowest id among equals) at or above the threshold, and its ratio."""
    names = dict(sorted(candidates))
    best = process.extractOne(key, names, scorer=fuzz.token_sort_ratio, score_cutoff=threshold * 100)
    if best is None:
        return None
    _, ratio, account_id = best
    return account_id, ratio


async def match_many(
    *, session: AsyncSession, leads: Sequence[LeadReceived], fuzzy_threshold: float = FUZZY_THRESHOLD
) -> list[MatchedAccount | None]:
    """Each lead's account, in order: domain first (never a free-mail domain), then company name.

    The whole batch takes one query for its domains, one for exact names, one for fuzzy candidates
    and one to read the matched accounts, whatever the book's size.
    """
    wanted = [_lead_domains(lead) for lead in leads]
    holders = await _accounts_by_domain(session, (domain for domains in wanted for domain, _, _ in domains))
    found: list[_Candidate | None] = []
    for domains in wanted:
        candidates = [
            _Candidate(account_id=account_id, method=method, confidence=confidence, rank=rank)
            for rank, (domain, method, confidence) in enumerate(domains)
            for account_id in holders.get(domain, ())
        ]
        found.append(min(candidates, key=_Candidate.order) if candidates else None)
    name_keys = {
        index: normalise.name_key(lead.company)
        for index, lead in enumerate(leads)
        if found[index] is None and lead.company
    }
    name_keys = {index: key for index, key in name_keys.items() if key}
    named = await _accounts_by_name(session, name_keys.values())
    for index, key in name_keys.items():
        if key in named:
            found[index] = _Candidate(
                account_id=named[key], method=MatchMethod.NAME, confidence=NAME_CONFIDENCE, rank=0
            )

    fuzzy_keys = {index: key for index, key in name_keys.items() if found[index] is None}
    lead_blocks = {index: normalise.blocking_keys(key) for index, key in fuzzy_keys.items()}
    blocked = await _names_by_block(session, (block for blocks in lead_blocks.values() for block in blocks))
    for index, key in fuzzy_keys.items():
        near = (candidate for block in lead_blocks[index] for candidate in blocked.get(block, ()))
        best = _fuzzy_best(key, near, fuzzy_threshold)
        if best is not None:
            account_id, ratio = best
            # Scaled by the exact-name confidence, so a near miss never ranks above an exact name.
            confidence = round(NAME_CONFIDENCE * ratio / 100, 4)
            found[index] = _Candidate(
                account_id=account_id, method=MatchMethod.FUZZY_NAME, confidence=confidence, rank=0
            )

    accounts = await _fields_by_id(session, (candidate.account_id for candidate in found if candidate))
    matched: list[MatchedAccount | None] = []
    for candidate in found:
        fields = accounts.get(candidate.account_id) if candidate else None
        if candidate is None or fields is None:
            matched.append(None)
            continue
        match = AccountMatch(
            account_id=candidate.account_id,
            method=candidate.method,
            confidence=candidate.confidence,
            owner_rep_id=fields["owner_rep_id"],
        )
        matched.append(MatchedAccount(match=match, fields=fields))
    return matched


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def enrich(facts: Mapping[str, Any], matched: MatchedAccount | None) -> tuple[dict[str, Any], list[str]]:
    """The facts with the account's firmographics filling what the lead lacks, and which fields were filled."""
    enriched = dict(facts)
    if matched is None:
        return enriched, []
    filled = []
    lent = {"company": matched.fields.get("name"), **{name: matched.fields.get(name) for name in ENRICHED_FIELDS}}
    for name, value in lent.items():
        if _missing(enriched.get(name)) and not _missing(value):
            enriched[name] = value
            filled.append(name)
    enriched["account"] = dict(matched.fields)
    return enriched, filled
