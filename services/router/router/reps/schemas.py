"""Request and response shapes of the reps API; secrets go in, never out."""

from datetime import datetime
from typing import Annotated, Any, Literal

import pycountry
from pydantic import AfterValidator, AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator, model_validator

from leadrelay.problems import FieldError
from leadrelay.validation import storable
from router.reps.models import REP_ID_PATTERN
from router.teams.models import TEAM_ID_PATTERN

MAX_BATCH = 1000
MIN_SECRET_LENGTH = 16
EXAMPLE_REP_ID = "rep-ada"


def _text(value: str) -> str:
    return str(storable(value.strip()))


def _language(value: str) -> str:
    code = value.strip().lower()
    if len(code) != 2 or pycountry.languages.get(alpha_2=code) is None:
        raise ValueError(f"{value!r} is not an ISO 639-1 language code (two letters, e.g. en, de)")
    return code


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("must carry a timezone, e.g. 2026-12-01T00:00:00Z")
    return value


Language = Annotated[str, AfterValidator(_language)]
Territory = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_text)]
TeamRef = Annotated[str, Field(pattern=TEAM_ID_PATTERN)]
AwareDatetime = Annotated[datetime, AfterValidator(_aware)]


class OutOfOffice(BaseModel):
    """The rep is away from `start` (inclusive) to `end` (exclusive)."""

    model_config = ConfigDict(extra="forbid")

    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="after")
    def _ordered(self) -> "OutOfOffice":
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class WebhookChannelIn(BaseModel):
    """A Standard Webhooks endpoint of the rep, signed with `secret`."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["webhook"]
    url: AnyHttpUrl
    secret: str = Field(min_length=MIN_SECRET_LENGTH, max_length=500, description="Never shown again (last 4 only).")

    @field_validator("secret")
    @classmethod
    def _storable(cls, value: str) -> str:
        return str(storable(value))


class SlackChannelIn(BaseModel):
    """A Slack incoming-webhook URL (itself a secret: never shown again, last 4 only)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["slack"]
    url: AnyHttpUrl


ChannelIn = Annotated[WebhookChannelIn | SlackChannelIn, Field(discriminator="kind")]

REP_EXAMPLE: dict[str, Any] = {
    "name": "Ada Lovelace",
    "teams": ["team-emea"],
    "weight": 1.0,
    "daily_cap": 20,
    "weekly_cap": 80,
    "languages": ["en", "fr"],
    "territories": ["GB", "IE", "EMEA"],
    "active": True,
    "available": True,
    "out_of_office": [{"start": "2026-12-24T00:00:00Z", "end": "2027-01-02T00:00:00Z"}],
    "crm_user_id": "0055g00000AdaLAAZ",
    "channels": [
        {
            "kind": "webhook",
            "url": "https://crm.example/hooks/leadrelay",
            "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        },
        {"kind": "slack", "url": "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXabcd"},
    ],
}


class RepPut(BaseModel):
    """A rep's whole state (PUT replaces it: a field left out is cleared; channels included)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [REP_EXAMPLE]})

    name: str = Field(min_length=1, max_length=200)
    teams: list[TeamRef] = Field(default_factory=list, max_length=50, description="Ids of existing teams.")
    weight: float = Field(default=1.0, gt=0, le=1000, description="Share of leads relative to the other reps.")
    daily_cap: int | None = Field(default=None, ge=0, le=100_000, description="At most this many leads a day.")
    weekly_cap: int | None = Field(default=None, ge=0, le=1_000_000, description="At most this many leads a week.")
    languages: list[Language] = Field(default_factory=list, max_length=50, description="ISO 639-1 codes.")
    territories: list[Territory] = Field(
        default_factory=list, max_length=500, description="Country codes or region names the rep covers."
    )
    active: bool = True
    available: bool = Field(default=True, description="The rep's own toggle (also `PUT /v1/reps/{id}/availability`).")
    out_of_office: list[OutOfOffice] = Field(default_factory=list, max_length=100)
    crm_user_id: str | None = Field(default=None, min_length=1, max_length=100)
    channels: list[ChannelIn] = Field(default_factory=list, max_length=10, description="Where the rep is told.")

    @field_validator("name", "crm_user_id")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        return None if value is None else _text(value)

    @field_validator("teams", "languages", "territories")
    @classmethod
    def _unique(cls, values: list[str]) -> list[str]:
        return list(dict.fromkeys(values))


class RepBatchItem(RepPut):
    """One rep of a batch: its id and its whole state."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"id": EXAMPLE_REP_ID, **REP_EXAMPLE}]})

    id: str = Field(pattern=REP_ID_PATTERN, description="The rep's id, as in `PUT /v1/reps/{id}`.")


class RepBatch(BaseModel):
    """Up to 1,000 reps (a CRM's user list), each stored or refused on its own."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"reps": [{"id": EXAMPLE_REP_ID, **REP_EXAMPLE}, {"id": "rep-2", "name": ""}]}]
        },
    )

    # Items are validated one by one in the service, so that one bad item fails only itself.
    reps: list[Any] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description=f"1 to {MAX_BATCH} objects shaped like RepBatchItem.",
        json_schema_extra={"items": RepBatchItem.model_json_schema()},
    )


class AvailabilityPut(BaseModel):
    """The rep's availability toggle."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"available": False}]})

    available: bool


class WebhookChannelPublic(BaseModel):
    """A webhook channel as shown: its URL and the last 4 characters of its secret."""

    kind: Literal["webhook"]
    url: str
    secret_last4: str
    disabled: bool = Field(default=False, description="Answered 410 Gone: no deliveries until the rep is PUT again.")


class SlackChannelPublic(BaseModel):
    """A Slack channel as shown: the last 4 characters of its URL (the URL is a secret)."""

    kind: Literal["slack"]
    url_last4: str
    disabled: bool = Field(default=False, description="Answered 410 Gone: no deliveries until the rep is PUT again.")


REP_PUBLIC_EXAMPLE: dict[str, Any] = {
    **REP_EXAMPLE,
    "id": EXAMPLE_REP_ID,
    "channels": [
        {"kind": "webhook", "url": "https://crm.example/hooks/leadrelay", "secret_last4": "LaSw", "disabled": False},
        {"kind": "slack", "url_last4": "abcd", "disabled": False},
    ],
    "version": 1,
    "created_at": "2026-11-27T10:00:00Z",
    "updated_at": "2026-11-27T10:00:00Z",
}


class RepPublic(BaseModel):
    """A stored rep: never a secret."""

    model_config = ConfigDict(json_schema_extra={"examples": [REP_PUBLIC_EXAMPLE]})

    id: str
    name: str
    teams: list[str]
    weight: float
    daily_cap: int | None
    weekly_cap: int | None
    languages: list[str]
    territories: list[str]
    active: bool
    available: bool
    out_of_office: list[OutOfOffice]
    crm_user_id: str | None
    channels: list[Annotated[WebhookChannelPublic | SlackChannelPublic, Field(discriminator="kind")]]
    version: int
    created_at: datetime
    updated_at: datetime


class RepList(BaseModel):
    """Every rep, by id."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"reps": [REP_PUBLIC_EXAMPLE]}]})

    reps: list[RepPublic]


class RepResult(BaseModel):
    """What became of one item of a batch: `status` is what `PUT` would have answered."""

    id: str | None = None
    status: int = Field(description="201 created, 200 stored (`changed` says whether it differed), 422 refused.")
    changed: bool = False
    rep: RepPublic | None = None
    errors: list[FieldError] = Field(default_factory=list)


class RepBatchResults(BaseModel):
    """One result per item, in the order of the request."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "results": [
                        {"id": EXAMPLE_REP_ID, "status": 201, "changed": True, "rep": REP_PUBLIC_EXAMPLE, "errors": []},
                        {
                            "id": "rep-2",
                            "status": 422,
                            "changed": False,
                            "rep": None,
                            "errors": [
                                {
                                    "field": "reps.1.name",
                                    "pointer": "/reps/1/name",
                                    "message": "String should have at least 1 character",
                                }
                            ],
                        },
                    ]
                }
            ]
        }
    )

    results: list[RepResult]
