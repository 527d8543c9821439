"""Request and response shapes of the accounts API."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlmodel._compat import SQLModelConfig

from intake.accounts.models import ACCOUNT_ID_PATTERN, AccountBase
from leadrelay.problems import FieldError

MAX_BATCH = 1000
EXAMPLE_ACCOUNT_ID = "0015g00000AbCdEAAZ"

ACCOUNT_EXAMPLE: dict[str, Any] = {
    "name": "Analytical Engines Ltd",
    "domains": ["analytical.example", "analytical-engines.example"],
    "industry": "Software",
    "employees": 250,
    "annual_revenue": 42000000,
    "country": "GB",
    "owner_rep_id": "rep-ada",
    "crm_id": "0015g00000AbCdEAAZ",
}

ACCOUNT_PUBLIC_EXAMPLE: dict[str, Any] = {
    **ACCOUNT_EXAMPLE,
    "id": EXAMPLE_ACCOUNT_ID,
    "version": 1,
    "created_at": "2026-11-23T12:00:00.120000Z",
    "updated_at": "2026-11-23T12:00:00.120000Z",
}


class AccountPut(AccountBase):
    """The whole state of an account (PUT replaces it: a field left out is cleared)."""

    model_config = SQLModelConfig(extra="forbid", json_schema_extra={"examples": [ACCOUNT_EXAMPLE]})

    # Redeclared so a country name gets through to normalisation (stored as two letters).
    country: str | None = Field(
        default=None,
        max_length=100,
        description="An ISO 3166-1 code (alpha-2, alpha-3 or numeric) or an English name; stored as alpha-2.",
        examples=["GB", "GBR", "United Kingdom"],
    )


class AccountBatchItem(AccountPut):
    """One account of a batch: its id and its whole state."""

    model_config = SQLModelConfig(
        extra="forbid", json_schema_extra={"examples": [{"id": EXAMPLE_ACCOUNT_ID, **ACCOUNT_EXAMPLE}]}
    )

    id: str = Field(pattern=ACCOUNT_ID_PATTERN, description="The account's id, as in `PUT /v1/accounts/{id}`.")


class AccountBatch(BaseModel):
    """Up to 1,000 accounts, each stored or refused on its own."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"accounts": [{"id": EXAMPLE_ACCOUNT_ID, **ACCOUNT_EXAMPLE}, {"id": "acc-2", "name": ""}]}]
        },
    )

    # Items are validated one by one in the service, so that one bad item fails only itself.
    accounts: list[Any] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description=f"1 to {MAX_BATCH} objects shaped like AccountBatchItem.",
        json_schema_extra={"items": AccountBatchItem.model_json_schema()},
    )


class AccountPublic(AccountBase):
    """A stored account."""

    model_config = SQLModelConfig(json_schema_extra={"examples": [ACCOUNT_PUBLIC_EXAMPLE]})

    id: str
    version: int
    created_at: datetime
    updated_at: datetime


class AccountResult(BaseModel):
    """What became of one item of a batch: `status` is what `PUT` would have answered."""

    id: str | None = None
    status: int = Field(description="201 created, 200 stored (`changed` says whether it differed), 422 refused.")
    changed: bool = False
    account: AccountPublic | None = None
    errors: list[FieldError] = Field(default_factory=list)


class AccountBatchResults(BaseModel):
    """One result per item, in the order of the request."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "results": [
                        {
                            "id": EXAMPLE_ACCOUNT_ID,
                            "status": 201,
                            "changed": True,
                            "account": ACCOUNT_PUBLIC_EXAMPLE,
                            "errors": [],
                        },
                        {
                            "id": "acc-2",
                            "status": 422,
                            "changed": False,
                            "account": None,
                            "errors": [
                                {
                                    "field": "accounts.1.name",
                                    "pointer": "/accounts/1/name",
                                    "message": "String should have at least 1 character",
                                }
                            ],
                        },
                    ]
                }
            ]
        }
    )

    results: list[AccountResult]
