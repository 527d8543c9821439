"""The account book as stored: accounts, the domains they answer to, and the keys fuzzy matching looks up."""

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Column
from sqlmodel import Field, SQLModel

NAME_KEY_LENGTH = 300


class BookAccount(SQLModel, table=True):
    """An account as the newest account.changed described it."""

    __tablename__ = "book_account"

    id: str = Field(primary_key=True, max_length=100)
    name: str = Field(max_length=300)
    name_key: str = Field(max_length=NAME_KEY_LENGTH, index=True)
    """The name normalised (`scoring.accounts.normalise.name_key`): exact name matches look it up."""
    domains: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    industry: str | None = Field(default=None, max_length=100)
    employees: int | None = None
    annual_revenue: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    country: str | None = Field(default=None, max_length=2)
    owner_rep_id: str | None = Field(default=None, max_length=100)
    crm_id: str | None = Field(default=None, max_length=100)
    version: int | None = None
    changed_at: datetime


class AccountDomain(SQLModel, table=True):
    """One domain of an account; a domain two accounts claim has a row for each."""

    __tablename__ = "book_account_domain"

    domain: str = Field(primary_key=True, max_length=255)
    account_id: str = Field(primary_key=True, max_length=100, index=True)


class AccountNameKey(SQLModel, table=True):
    """One blocking key of an account's name: fuzzy matching compares a lead only with accounts sharing one."""

    __tablename__ = "book_account_name_key"

    key: str = Field(primary_key=True, max_length=40)
    account_id: str = Field(primary_key=True, max_length=100, index=True)
    name_key: str = Field(max_length=NAME_KEY_LENGTH)
    """The account's normalised name, here so candidates are compared without reading their accounts."""
