"""Request and response shapes of the keys API."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from leadrelay.apikeys import Scope, Team

EXAMPLE_KEY_ID = "key_3f9a1c2b7d4e"

_PUBLIC_EXAMPLE: dict[str, Any] = {
    "id": EXAMPLE_KEY_ID,
    "name": "hubspot-sync",
    "team": "integration",
    "scopes": ["leads:write", "activities:write"],
    "created_at": "2026-11-27T10:00:00Z",
    "revoked_at": None,
}


class ApiKeyCreate(BaseModel):
    """A key to create; its secret is generated and shown once."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"name": "hubspot-sync", "team": "integration", "scopes": ["leads:write", "activities:write"]}]
        },
    )

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._:@-]*$")
    team: Team
    scopes: list[Scope] = Field(default_factory=list, max_length=len(Scope))

    @field_validator("scopes")
    @classmethod
    def _distinct(cls, scopes: list[Scope]) -> list[Scope]:
        return sorted(set(scopes))


class ApiKeyPublic(BaseModel):
    """A key as anyone with `admin` may see it: never its secret, nor its hash."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_PUBLIC_EXAMPLE]})

    id: str
    name: str
    team: Team
    scopes: list[Scope]
    created_at: datetime
    revoked_at: datetime | None = None


class ApiKeyCreated(ApiKeyPublic):
    """A new key with its secret: the only time the secret is shown."""

    model_config = ConfigDict(json_schema_extra={"examples": [{**_PUBLIC_EXAMPLE, "key": "lr_Xq3...(43 characters)"}]})

    key: str = Field(description="The secret. Store it now: LeadRelay keeps only its hash.")


class ApiKeyList(BaseModel):
    """Every key, newest first, revoked ones included."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"keys": [_PUBLIC_EXAMPLE]}]})

    keys: list[ApiKeyPublic]
