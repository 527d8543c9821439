"""Accounts as a CRM syncs them: the fields every account has, and the stored row."""

import re
from datetime import datetime
from typing import Annotated, Any

import idna
from pydantic import AfterValidator, field_validator
from sqlalchemy import JSON, BigInteger, Column
from sqlmodel import Field, SQLModel

from intake.leads import normalise
from leadrelay.events import utcnow
from leadrelay.validation import storable

MAX_DOMAINS = 50
ACCOUNT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}$"

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_PORT = re.compile(r":[0-9]{1,5}$")


def _host(value: str) -> str:
    # CRMs hold websites as often as domains: "https://www.example.com:443/about?x" names example.com.
    text = _SCHEME.sub("", value.strip()).removeprefix("//")
    text = re.split(r"[/?#]", text, maxsplit=1)[0]
    return _PORT.sub("", text).rstrip(".")


def normalise_domain(value: str) -> str:
    """A company's web domain, lower-case, in Unicode (`https://www.Bücher.Example/x` -> `bücher.example`)."""
    text = _host(value)
    if ":" in text or "@" in text or "[" in text:
        raise ValueError(f"{value!r} is not a domain name: give the host only, like example.com")
    try:
        # UTS 46 maps case and compatibility forms the way browsers do; the A-label form is what DNS holds.
        ascii_form = idna.encode(text, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(f"{value!r} is not a valid domain name ({exc})") from None
    # A company's domain, not a host on it: CRMs often hold the website's "www." name.
    ascii_form = ascii_form.removeprefix("www.")
    labels = ascii_form.split(".")
    if len(ascii_form) > 253 or len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"{value!r} is not a valid domain name: dot-separated labels of letters, digits and '-'")
    if labels[-1].isdigit():
        raise ValueError(f"{value!r} is an IP address or has a numeric top-level domain, not a domain name")
    return idna.decode(ascii_form)


Domain = Annotated[str, AfterValidator(normalise_domain)]
"""A web domain normalised (a refusal names its index: `domains.2`)."""


class AccountBase(SQLModel):
    """Fields a CRM sends about an account."""

    name: str = Field(min_length=1, max_length=300)
    domains: list[Domain] = Field(
        default_factory=list,
        sa_column=Column(JSON, nullable=False),
        description=(
            f"The company's web domains (at most {MAX_DOMAINS}), stored lower-case without scheme, `www.` or "
            "path; the first is the main one."
        ),
    )
    industry: str | None = Field(default=None, min_length=1, max_length=100)
    employees: int | None = Field(default=None, ge=0, le=10_000_000)
    annual_revenue: int | None = Field(
        default=None,
        ge=0,
        le=10**15,
        sa_column=Column(BigInteger, nullable=True),
        description="Yearly revenue in whole units of the CRM's currency.",
    )
    country: str | None = Field(default=None, min_length=2, max_length=2, description="ISO 3166-1 alpha-2")
    owner_rep_id: str | None = Field(default=None, min_length=1, max_length=100)
    crm_id: str | None = Field(default=None, min_length=1, max_length=100)

    @field_validator("*")
    @classmethod
    def _storable(cls, value: object) -> object:
        return storable(value)

    @field_validator("name", "industry", "owner_rep_id", "crm_id")
    @classmethod
    def _trimmed(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    @field_validator("domains")
    @classmethod
    def _normalised_domains(cls, value: list[str]) -> list[str]:
        if len(value) > MAX_DOMAINS:
            raise ValueError(f"at most {MAX_DOMAINS} domains")
        # Order kept (the first is the main domain), repeats dropped (each is already normalised).
        return list(dict.fromkeys(value))

    @field_validator("country")
    @classmethod
    def _iso_country(cls, value: str | None) -> str | None:
        # The same normaliser as leads', so an account and its leads name a country alike.
        if value is None or not normalise.text(value):
            return None
        return normalise.country(value)


class Account(AccountBase, table=True):
    """A stored account; `version` grows with every change that was announced."""

    id: str = Field(primary_key=True, max_length=100)
    version: int = 1
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    def fields(self) -> dict[str, Any]:
        """What a client sent, to compare a new PUT with."""
        return self.model_dump(include=set(AccountBase.model_fields))
