"""Account logic: store a CRM's account, announce it only when it really changed, and batches of them."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from intake.accounts.models import Account, AccountBase
from intake.accounts.schemas import AccountBatchItem, AccountBatchResults, AccountPublic, AccountResult
from leadrelay import idempotency_keys, outbox
from leadrelay.db import begin_writing, insert_unless_taken, is_unavailable, refusal
from leadrelay.events import AccountChanged, new_event, utcnow
from leadrelay.idempotency_keys import Answer, IdempotentRequest
from leadrelay.problems import FieldError, item_field_errors, refused_field

SOURCE = "leadrelay/intake"


@dataclass(frozen=True)
class Stored:
    """An account after a PUT, whether it was new, and whether it changed (and so was announced)."""

    account: Account
    created: bool
    changed: bool


def _announcement(account: Account) -> AccountChanged:
    return AccountChanged(
        account_id=account.id,
        name=account.name,
        domain=account.domains[0] if account.domains else None,
        owner_rep_id=account.owner_rep_id,
        changed_at=account.updated_at,
        domains=list(account.domains),
        industry=account.industry,
        employees=account.employees,
        annual_revenue=account.annual_revenue,
        country=account.country,
        crm_id=account.crm_id,
        version=account.version,
    )


async def _locked(session: AsyncSession, account_id: str) -> Account | None:
    # The lock (a row lock on PostgreSQL, the writer lock on SQLite) makes two PUTs of one account
    # take turns, so an unchanged one is seen as unchanged.
    await begin_writing(session, Account)
    statement = (
        select(Account).where(Account.id == account_id).with_for_update().execution_options(populate_existing=True)
    )
    return (await session.exec(statement)).first()


async def _stage_put(session: AsyncSession, *, account_id: str, account_in: AccountBase) -> Stored:
    fields = account_in.model_dump(include=set(AccountBase.model_fields))
    account = await _locked(session, account_id)
    if account is None:
        now = utcnow()
        account = Account(id=account_id, **fields, created_at=now, updated_at=now)
        if await insert_unless_taken(session, [account]):
            outbox.add(session, new_event(_announcement(account), source=SOURCE))
            return Stored(account=account, created=True, changed=True)
        account = await _locked(session, account_id)  # another request created it first
        assert account is not None
    if account.fields() == fields:
        return Stored(account=account, created=False, changed=False)
    for name, value in fields.items():
        setattr(account, name, value)
    account.version += 1
    account.updated_at = utcnow()
    session.add(account)
    outbox.add(session, new_event(_announcement(account), source=SOURCE))
    return Stored(account=account, created=False, changed=True)


async def put(*, session: AsyncSession, account_id: str, account_in: AccountBase) -> Stored:
    """Store an account's whole state; account.changed is published only if it differs from what is stored."""
    stored = await _stage_put(session, account_id=account_id, account_in=account_in)
    await session.commit()
    return stored


async def get(*, session: AsyncSession, account_id: str) -> Account | None:
    """An account by id."""
    return await session.get(Account, account_id)


@dataclass(frozen=True)
class ItemOutcome:
    """One batch item: stored, or refused with the fields that failed."""

    account_id: str | None
    stored: Stored | None = None
    errors: Sequence[FieldError] = ()


def _item_errors(index: int, error: ValidationError) -> list[FieldError]:
    return item_field_errors(error, at=("accounts", str(index)))


def _result(outcome: ItemOutcome) -> AccountResult:
    if outcome.stored is None:
        return AccountResult(id=outcome.account_id, status=422, errors=list(outcome.errors))
    return AccountResult(
        id=outcome.account_id,
        status=201 if outcome.stored.created else 200,
        changed=outcome.stored.changed,
        account=AccountPublic.model_validate(outcome.stored.account, from_attributes=True),
    )


async def _stage_batch(session: AsyncSession, *, items: Sequence[Any]) -> list[ItemOutcome]:
    outcomes = []
    for index, raw in enumerate(items):
        raw_id = raw.get("id") if isinstance(raw, dict) else None
        account_id = raw_id if isinstance(raw_id, str) else None
        try:
            item = AccountBatchItem.model_validate(raw)
        except ValidationError as invalid:
            outcomes.append(ItemOutcome(account_id=account_id, errors=_item_errors(index, invalid)))
            continue
        try:
            # A savepoint per item: a value the database refuses fails that item, not the batch.
            async with session.begin_nested():
                stored = await _stage_put(session, account_id=item.id, account_in=item)
        except DBAPIError as error:
            refused = refusal(error)
            if is_unavailable(error) or refused is None:
                raise
            outcomes.append(
                ItemOutcome(account_id=item.id, errors=[refused_field(refused, at=("accounts", str(index)))])
            )
            continue
        outcomes.append(ItemOutcome(account_id=item.id, stored=stored))
    return outcomes


async def put_batch(
    *, session: AsyncSession, items: Sequence[Any], idempotency: IdempotentRequest | None = None
) -> Answer:
    """Store each valid item in order, in one transaction; an invalid item is refused on its own.

    The answer holds one result per item, in order; a retry with the same Idempotency-Key repeats it.
    """

    async def store(session: AsyncSession) -> Answer:
        outcomes = await _stage_batch(session, items=items)
        results = AccountBatchResults(results=[_result(outcome) for outcome in outcomes])
        return Answer(status_code=200, body=results.model_dump(mode="json"))

    try:
        answer = await idempotency_keys.answer_once(session, request=idempotency, work=store)
    except BaseException:
        await session.rollback()
        raise
    await session.commit()
    return answer
