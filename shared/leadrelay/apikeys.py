"""API keys: stored as SHA-256 hashes with a team and scopes, checked by a FastAPI dependency.

Intake owns the key registry and announces every change (`apikey.changed` on `leadrelay.apikeys`);
every service keeps its own copy of the `api_key` table from those announcements, so one key
works on all four services while each keeps its own database.
"""

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict
from sqlalchemy import JSON, Column, String
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.events import ApiKeyChanged, CloudEvent, utcnow
from leadrelay.openapi import problem_responses
from leadrelay.problems import ProblemException
from leadrelay.runtime import get_runtime

# Documented in README and docs/configuration.md; never seeded when ENVIRONMENT=production.
DEFAULT_DEV_API_KEY = "lr_dev_insecure_change_me"
DEFAULT_DEMO_MARKETING_KEY = "lr_demo_marketing_insecure"
DEFAULT_DEMO_SALES_KEY = "lr_demo_sales_insecure"
KEY_PREFIX = "lr_"
ID_PREFIX = "key_"


class Team(StrEnum):
    """The team a key acts for; approvals of agreements count per team."""

    MARKETING = "marketing"
    SALES = "sales"
    OPS = "ops"
    INTEGRATION = "integration"


class Scope(StrEnum):
    """What a key may do; docs/api.md maps every endpoint to the scope it needs."""

    LEADS_READ = "leads:read"
    LEADS_WRITE = "leads:write"
    ACTIVITIES_WRITE = "activities:write"
    ACCOUNTS_WRITE = "accounts:write"
    SOURCES_WRITE = "sources:write"
    ICP_WRITE = "icp:write"
    ICP_APPROVE = "icp:approve"
    ROUTING_READ = "routing:read"
    ROUTING_WRITE = "routing:write"
    REPS_WRITE = "reps:write"
    SLA_READ = "sla:read"
    SLA_WRITE = "sla:write"
    SLA_APPROVE = "sla:approve"
    ADMIN = "admin"


_KNOWN_SCOPES = frozenset(scope.value for scope in Scope)


class ApiKeyBase(SQLModel):
    """What anyone holding the key may see of it."""

    name: str = Field(max_length=100)
    team: Team = Field(sa_column=Column(String(20), nullable=False))
    scopes: list[Scope] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class ApiKey(ApiKeyBase, table=True):
    """A stored key: only the hash of the secret is kept; `version` grows with every change."""

    __tablename__ = "api_key"

    id: str = Field(primary_key=True, max_length=40)
    key_hash: str = Field(max_length=64, unique=True, index=True)
    version: int = 1
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None

    def has_scopes(self, scopes: Sequence[str]) -> bool:
        """Whether the key holds every one of `scopes`."""
        return set(scopes) <= set(self.scopes)

    def announcement(self) -> ApiKeyChanged:
        """The event that tells every service this key's current state."""
        return ApiKeyChanged(
            key_id=self.id,
            name=self.name,
            team=self.team,
            scopes=list(self.scopes),
            key_hash=self.key_hash,
            version=self.version,
            created_at=self.created_at,
            revoked_at=self.revoked_at,
            changed_at=self.updated_at,
        )


class WhoAmI(BaseModel):
    """The key a request authenticated with."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"id": "key_3f9a1c2b7d4e", "name": "hubspot-sync", "team": "integration", "scopes": ["leads:write"]}
            ]
        }
    )

    id: str
    name: str
    team: Team
    scopes: list[Scope]


def hash_key(secret: str) -> str:
    """SHA-256 of a key; keys are long random strings, so a fast hash is enough."""
    return hashlib.sha256(secret.encode()).hexdigest()


def generate_key() -> str:
    """A new random secret."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def generate_id() -> str:
    """A new key id (public: it names the key, it does not open anything)."""
    return ID_PREFIX + secrets.token_hex(6)


async def authenticate(session: AsyncSession, *, secret: str) -> ApiKey | None:
    """The live key matching a presented secret, or None."""
    digest = hash_key(secret)
    key = (await session.exec(select(ApiKey).where(ApiKey.key_hash == digest))).first()
    if key is None or key.revoked_at is not None or not hmac.compare_digest(key.key_hash, digest):
        return None
    return key


async def apply_announcements(events: Sequence[CloudEvent[ApiKeyChanged]], session: AsyncSession) -> None:
    """Store announced keys unless this database already holds the same or a later version."""
    latest: dict[str, ApiKeyChanged] = {}
    for event in events:
        seen = latest.get(event.data.key_id)
        if seen is None or event.data.version > seen.version:
            latest[event.data.key_id] = event.data
    if not latest:
        return
    stored = {key.id: key for key in (await session.exec(select(ApiKey).where(col(ApiKey.id).in_(latest)))).all()}
    for key_id, change in latest.items():
        key = stored.get(key_id)
        if key is not None and key.version >= change.version:
            continue
        if key is None:
            # A secret's hash is unique: a key re-created under a new id replaces the stale copy.
            await _forget_hash(session, change.key_hash)
            key = ApiKey(id=key_id, key_hash=change.key_hash, name=change.name, team=Team(change.team))
        key.sqlmodel_update(
            {
                "name": change.name,
                "team": Team(change.team),
                # A scope a newer registry knows and this service does not guards nothing here.
                "scopes": [Scope(scope) for scope in change.scopes if scope in _KNOWN_SCOPES],
                "key_hash": change.key_hash,
                "version": change.version,
                "created_at": change.created_at,
                "updated_at": change.changed_at,
                "revoked_at": change.revoked_at,
            }
        )
        session.add(key)
    await session.flush()


async def _forget_hash(session: AsyncSession, key_hash: str) -> None:
    for stale in (await session.exec(select(ApiKey).where(ApiKey.key_hash == key_hash))).all():
        await session.delete(stale)
    await session.flush()


_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`.")

# Keys are checked on every request; remembering a verdict briefly keeps the database off the hot
# path. A revoked key therefore keeps working here for at most this long after its announcement
# arrives; docs/api.md promises 10 seconds end to end.
CACHE_SECONDS = 2.0


class KeyCache:
    """Recent verdicts by key hash, bounded; one database lookup per key at a time."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, ApiKey | None]] = {}
        # Under load every request in flight when a verdict expires would miss at once and each
        # run its own lookup; they wait for the first one instead.
        self._loading: dict[str, asyncio.Future[ApiKey | None]] = {}
        self._generation = 0

    def get(self, digest: str) -> tuple[bool, ApiKey | None]:
        """(found, key); a verdict older than CACHE_SECONDS is not found."""
        entry = self._entries.get(digest)
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def put(self, digest: str, key: ApiKey | None) -> None:
        """Remember a verdict (None: no live key)."""
        if len(self._entries) > 10_000:  # bounded: wrong keys must not grow it without limit
            self._entries.clear()
        self._entries[digest] = (time.monotonic() + CACHE_SECONDS, key)

    def clear(self) -> None:
        """Forget every verdict (a key changed in this process), including those being looked up."""
        self._entries.clear()
        self._generation += 1

    async def verdict(self, digest: str, load: Callable[[], Awaitable[ApiKey | None]]) -> ApiKey | None:
        """The remembered verdict, else the one `load` gives, loaded once for all who ask meanwhile."""
        found, key = self.get(digest)
        if found:
            return key
        loading = self._loading.get(digest)
        if loading is None:
            loading = self._loading[digest] = asyncio.ensure_future(self._load(digest, load))
            # Retrieved here too, so a lookup whose every asker went away logs no "never retrieved".
            loading.add_done_callback(lambda done: done.cancelled() or done.exception())
        # Shielded: one asker cancelled (its client gone) must not cancel the lookup the others wait for.
        return await asyncio.shield(loading)

    async def _load(self, digest: str, load: Callable[[], Awaitable[ApiKey | None]]) -> ApiKey | None:
        generation = self._generation
        try:
            key = await load()
        finally:
            del self._loading[digest]
        if generation == self._generation:  # not when a key changed while it loaded: that verdict may be stale
            self.put(digest, key)
        return key


def key_cache(request: Request) -> KeyCache:
    """The app's key cache, created on first use."""
    cache: KeyCache | None = getattr(request.app.state, "api_key_cache", None)
    if cache is None:
        cache = request.app.state.api_key_cache = KeyCache()
    return cache


async def lookup(request: Request, secret: str) -> ApiKey | None:
    """The live key matching a presented secret, or None, through the app's cache."""
    sessions = get_runtime(request).sessions

    async def load() -> ApiKey | None:
        # A short session of its own: the request must not hold a connection while it works.
        async with sessions() as session:
            return await authenticate(session, secret=secret)

    return await key_cache(request).verdict(hash_key(secret), load)


def require_scopes(*scopes: Scope) -> Callable[..., Awaitable[ApiKey]]:
    """Dependency that admits a request only with a live key holding every one of `scopes`.

    With no scopes, any live key is admitted. The scopes land in the operation's OpenAPI security
    requirement, which `document_scopes` also states as `x-required-scopes`.
    """
    required = [Scope(scope).value for scope in scopes]

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer, scopes=required)],
    ) -> ApiKey:
        key = None
        if credentials is not None and credentials.scheme.lower() == "bearer":
            key = await lookup(request, credentials.credentials)
        if key is None:
            raise ProblemException(
                401,
                "Unauthorized",
                "A valid API key is required: send `Authorization: Bearer <key>`.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        missing = sorted(set(scopes) - set(key.scopes))
        if missing:
            raise ProblemException(403, "Forbidden", f"The API key lacks the scope(s): {', '.join(missing)}.")
        return key

    return dependency


AnyKey = Annotated[ApiKey, Depends(require_scopes())]
AdminKey = Annotated[ApiKey, Depends(require_scopes(Scope.ADMIN))]

identity_router = APIRouter(prefix="/v1", tags=["identity"])


@identity_router.get(
    "/whoami",
    response_model=WhoAmI,
    summary="Which key is calling",
    responses=problem_responses(401, instance="/v1/whoami"),
)
async def whoami(key: AnyKey) -> WhoAmI:
    """The calling key's id, name, team and scopes (never its secret)."""
    return WhoAmI(id=key.id, name=key.name, team=key.team, scopes=key.scopes)


def document_scopes(app: FastAPI) -> None:
    """State each operation's scopes in the OpenAPI document (`x-required-scopes`, and in words).

    An operation that needs no key has no `x-required-scopes`; one that needs any live key has an
    empty list.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                requirements = operation.get("security")
                if not requirements:
                    continue
                scopes = sorted(
                    {scope for requirement in requirements for names in requirement.values() for scope in names}
                )
                operation["x-required-scopes"] = scopes
                needs = f"Requires scope {', '.join(f'`{scope}`' for scope in scopes)}." if scopes else "Any valid key."
                operation["description"] = f"{operation.get('description', '').rstrip()}\n\n{needs}".lstrip()
        return document

    app.openapi = openapi  # type: ignore[method-assign]
