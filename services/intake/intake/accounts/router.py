"""HTTP endpoints for accounts (scope `accounts:write`)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response, status
from fastapi.responses import JSONResponse

from intake.accounts import service
from intake.accounts.models import ACCOUNT_ID_PATTERN
from intake.accounts.schemas import (
    ACCOUNT_PUBLIC_EXAMPLE,
    EXAMPLE_ACCOUNT_ID,
    AccountBatch,
    AccountBatchResults,
    AccountPublic,
    AccountPut,
)
from leadrelay import idempotency_keys
from leadrelay.apikeys import ApiKey, Scope, require_scopes
from leadrelay.db import SessionDep
from leadrelay.idempotency_keys import IdempotencyKeyHeader
from leadrelay.openapi import problem_responses
from leadrelay.problems import ProblemException

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])

AccountsKey = Annotated[ApiKey, Depends(require_scopes(Scope.ACCOUNTS_WRITE))]
AccountId = Annotated[
    str,
    Path(
        pattern=ACCOUNT_ID_PATTERN,
        description="The account's id in the CRM: up to 100 letters, digits and `._:@-`.",
        examples=[EXAMPLE_ACCOUNT_ID],
    ),
]
_403 = {403: "The API key lacks the scope(s): accounts:write."}


def _public(account: object) -> AccountPublic:
    return AccountPublic.model_validate(account, from_attributes=True)


@router.put(
    "/{account_id}",
    response_model=AccountPublic,
    summary="Create or replace an account",
    responses={
        201: {
            "description": "The account was new: stored and announced",
            "content": {"application/json": {"example": ACCOUNT_PUBLIC_EXAMPLE}},
            "model": AccountPublic,
        },
        **problem_responses(400, 401, 403, 422, 503, instance=f"/v1/accounts/{EXAMPLE_ACCOUNT_ID}", details=_403),
    },
)
async def put_account(
    account_id: AccountId, account_in: AccountPut, session: SessionDep, _key: AccountsKey, response: Response
) -> AccountPublic:
    """Store the account's whole state: 201 if new, else 200; account.changed goes out only if something changed."""
    stored = await service.put(session=session, account_id=account_id, account_in=account_in)
    if stored.created:
        response.status_code = status.HTTP_201_CREATED
        response.headers["Location"] = f"/v1/accounts/{account_id}"
    return _public(stored.account)


@router.get(
    "/{account_id}",
    response_model=AccountPublic,
    summary="Read an account",
    responses=problem_responses(
        401,
        403,
        404,
        422,
        503,
        instance=f"/v1/accounts/{EXAMPLE_ACCOUNT_ID}",
        details={**_403, 404: f"No account with id {EXAMPLE_ACCOUNT_ID}."},
    ),
)
async def read_account(account_id: AccountId, session: SessionDep, _key: AccountsKey) -> AccountPublic:
    """The account as last stored (a sync reads back what it wrote, with the same scope)."""
    account = await service.get(session=session, account_id=account_id)
    if account is None:
        raise ProblemException(404, "Not Found", f"No account with id {account_id}.")
    return _public(account)


@router.post(
    ":batch",
    response_model=AccountBatchResults,
    summary="Create or replace up to 1,000 accounts",
    responses={
        **idempotency_keys.replayable(200, "One result per item, in order"),
        **problem_responses(400, 401, 403, 422, 503, instance="/v1/accounts:batch", details=_403),
    },
)
async def put_accounts(
    batch: AccountBatch,
    session: SessionDep,
    key: AccountsKey,
    request: Request,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Store each account as `PUT` would, in one transaction; one result per item in order, a bad item fails alone."""
    idempotency = idempotency_keys.request_for(request, owner=key.id, key=idempotency_key, payload=batch.accounts)
    answer = await service.put_batch(session=session, items=batch.accounts, idempotency=idempotency)
    return idempotency_keys.response(answer)
