"""Request and response shapes of the sources API; secrets go in, never out."""

import base64
import binascii
import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from intake.leads.schemas import LeadCreate
from intake.sources.models import SourceKind
from leadrelay.validation import storable

EXAMPLE_SOURCE_NAME = "hubspot-main"
MIN_SECRET_LENGTH = 16
DEFAULT_TOKEN_HEADER = "X-LeadRelay-Token"
_PATH_SEGMENT = re.compile(r"^[^.\s]{1,100}$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,100}$")
ATTRIBUTES_PREFIX = "attributes."


def lead_fields() -> set[str]:
    """Lead fields a mapping may fill (whatever LeadCreate holds today), besides `attributes.<key>`."""
    return set(LeadCreate.model_fields) - {"attributes"}


class SecretIn(BaseModel):
    """A signing secret that stops verifying at `expires_at` (rotation)."""

    model_config = ConfigDict(extra="forbid")

    value: str = Field(min_length=MIN_SECRET_LENGTH, max_length=500)
    expires_at: datetime | None = None

    @field_validator("value")
    @classmethod
    def _storable(cls, value: str) -> str:
        return str(storable(value))

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must carry a timezone, e.g. 2026-12-01T00:00:00Z")
        return value


_PUT_EXAMPLE: dict[str, Any] = {
    "kind": "hubspot",
    "secrets": [
        "3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        {"value": "9a8b7c6d-5e4f-4321-8765-43210fedcba9", "expires_at": "2026-12-01T00:00:00Z"},
    ],
    "field_mapping": {"properties.hs_lead_source": "campaign", "properties.industry": "attributes.industry"},
    "enabled": True,
}


class SourcePut(BaseModel):
    """A source's whole configuration; PUT replaces it (secrets included)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_PUT_EXAMPLE]})

    kind: SourceKind
    secrets: list[SecretIn] = Field(
        min_length=1,
        max_length=10,
        description=f"Signing secrets (at least {MIN_SECRET_LENGTH} characters); any unexpired one verifies.",
    )
    field_mapping: dict[str, str] = Field(
        default_factory=dict,
        max_length=100,
        description="Dotted path into the sender's record -> lead field (or `attributes.<key>`); "
        "adds to, and wins over, the kind's built-in mapping.",
    )
    token_header: str | None = Field(
        default=None, description=f"marketo only: the header carrying the token (default {DEFAULT_TOKEN_HEADER})."
    )
    enabled: bool = True

    @field_validator("secrets", mode="before", json_schema_input_type=list[str | SecretIn])
    @classmethod
    def _as_secrets(cls, values: Any) -> Any:
        # A bare string is a secret that never expires.
        if isinstance(values, list):
            return [{"value": value} if isinstance(value, str) else value for value in values]
        return values

    @field_validator("field_mapping")
    @classmethod
    def _known_targets(cls, mapping: dict[str, str]) -> dict[str, str]:
        fields = lead_fields()
        for path, target in mapping.items():
            if not all(_PATH_SEGMENT.match(segment) for segment in path.split(".")):
                raise ValueError(f"{path!r} is not a dotted path (segments of 1 to 100 characters, no spaces)")
            key = target.removeprefix(ATTRIBUTES_PREFIX)
            if target.startswith(ATTRIBUTES_PREFIX) and _PATH_SEGMENT.match(key):
                continue
            if target not in fields:
                raise ValueError(f"{target!r} is not a lead field ({', '.join(sorted(fields))}) or attributes.<key>")
        return mapping

    @field_validator("token_header")
    @classmethod
    def _header_name(cls, value: str | None) -> str | None:
        if value is not None and not _HEADER_NAME.match(value):
            raise ValueError("must be an HTTP header name (letters, digits, dashes)")
        return value

    @model_validator(mode="after")
    def _fits_the_kind(self) -> "SourcePut":
        if self.token_header is not None and self.kind != SourceKind.MARKETO:
            raise ValueError("token_header applies to kind marketo only")
        if self.kind == SourceKind.STANDARD:
            for secret in self.secrets:
                if not _is_standard_secret(secret.value):
                    raise ValueError("a standard secret is whsec_ followed by base64 (as Standard Webhooks issue them)")
        return self


def _is_standard_secret(value: str) -> bool:
    if not value.startswith("whsec_"):
        return False
    try:
        return bool(base64.b64decode(value.removeprefix("whsec_") + "==", validate=False))
    except (binascii.Error, ValueError):
        return False


class SecretPublic(BaseModel):
    """What may be shown of a secret: its last 4 characters and its expiry."""

    last4: str
    expires_at: datetime | None
    active: bool


_PUBLIC_EXAMPLE: dict[str, Any] = {
    "name": EXAMPLE_SOURCE_NAME,
    "kind": "hubspot",
    "url": f"/v1/webhooks/{EXAMPLE_SOURCE_NAME}",
    "secrets": [
        {"last4": "4c5d", "expires_at": None, "active": True},
        {"last4": "cba9", "expires_at": "2026-12-01T00:00:00Z", "active": True},
    ],
    "field_mapping": {"properties.hs_lead_source": "campaign", "properties.industry": "attributes.industry"},
    "token_header": None,
    "enabled": True,
    "created_at": "2026-11-27T10:00:00Z",
    "updated_at": "2026-11-27T10:00:00Z",
}


class SourcePublic(BaseModel):
    """A source as the API shows it: never a secret."""

    model_config = ConfigDict(json_schema_extra={"examples": [_PUBLIC_EXAMPLE]})

    name: str
    kind: SourceKind
    url: str
    secrets: list[SecretPublic]
    field_mapping: dict[str, str]
    token_header: str | None
    enabled: bool
    created_at: datetime
    updated_at: datetime


class SourceList(BaseModel):
    """Every source, by name."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"sources": [_PUBLIC_EXAMPLE]}]})

    sources: list[SourcePublic]
