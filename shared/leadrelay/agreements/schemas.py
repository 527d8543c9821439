"""Request and response shapes of the agreements API (the document's own schema comes from its kind)."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from leadrelay.agreements.diff import Change
from leadrelay.agreements.models import Transition, VersionStatus

NOTE_MAX = 1000


class VersionCreate(BaseModel):
    """A draft to store; each kind's router narrows `document` to the kind's schema."""

    model_config = ConfigDict(extra="forbid")

    document: BaseModel
    note: str = Field(default="", max_length=NOTE_MAX, description="Why this version; shown in lists and exports.")


class VersionImport(VersionCreate):
    """An exported YAML file: the kind it belongs to, its note and its document."""

    kind: str = Field(max_length=40)


class ApprovalCreate(BaseModel):
    """An approval; the team is the calling key's."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"note": "Checked with the SDR leads."}]})

    note: str | None = Field(default=None, max_length=NOTE_MAX)


class RejectionCreate(BaseModel):
    """A rejection, with the reason the author needs to do better."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "Students score as MQLs: add a penalty."}]}
    )

    reason: str = Field(min_length=1, max_length=NOTE_MAX)


class Author(BaseModel):
    """The key that drafted a version."""

    key_id: str
    name: str
    team: str


class ApprovalPublic(BaseModel):
    """One key's approval."""

    team: str
    key_id: str
    name: str
    at: datetime


class HistoryEntry(BaseModel):
    """One transition of a version: what, who (key and team), when, why."""

    action: Transition
    key_id: str | None
    name: str | None
    team: str | None
    at: datetime
    reason: str | None


class VersionPublic(BaseModel):
    """A version with its document, sign-off state and history.

    `document` is shown as stored, so versions drafted under an earlier schema stay readable.
    """

    kind: str
    version: int
    status: VersionStatus
    note: str
    document: dict[str, Any]
    author: Author
    created_at: datetime
    activated_at: datetime | None
    approvals: list[ApprovalPublic]
    approved_teams: list[str]
    required: dict[str, list[str]] = Field(description='`{"all_of": [teams]}` or `{"any_of": [teams]}`.')
    history: list[HistoryEntry]


class VersionList(BaseModel):
    """Every version of a kind, newest first."""

    versions: list[VersionPublic]


class VersionDiff(BaseModel):
    """What changed from one version's document to another's, path by path."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    kind: str
    from_: int = Field(alias="from")
    to: int
    changes: list[Change]
