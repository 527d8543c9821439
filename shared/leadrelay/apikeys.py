"""API keys stored as SHA-256 hashes, with scopes, checked by a FastAPI dependency."""

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import JSON, Column
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.events import utcnow
from leadrelay.problems import ProblemException
from leadrelay.runtime import get_runtime

# Documented in README and docs/configuration.md; refused when ENVIRONMENT=production.
DEFAULT_DEV_API_KEY = "lr_dev_insecure_change_me"
KEY_PREFIX = "lr_"


class ApiKeyBase(SQLModel):
    """What a caller may see of a key."""

    name: str = Field(max_length=100, unique=True)
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class ApiKey(ApiKeyBase, table=True):
    """A stored key: only the hash of the secret is kept."""

    __tablename__ = "api_key"

    id: int | None = Field(default=None, primary_key=True)
    key_hash: str = Field(max_length=64, unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None


def hash_key(secret: str) -> str:
    """SHA-256 of a key; keys are long random strings, so a fast hash is enough."""
    return hashlib.sha256(secret.encode()).hexdigest()


def generate_key() -> str:
    """A new random key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


async def upsert(session: AsyncSession, *, name: str, secret: str, scopes: list[str]) -> ApiKey:
    """Store (or replace the secret and scopes of) the key with this name, and commit.

    One statement (INSERT ... ON CONFLICT DO UPDATE), so processes upserting the same name at once
    (intake's workers seeding the development key) all succeed and leave one key.
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(ApiKey).values(name=name, key_hash=hash_key(secret), scopes=scopes, created_at=utcnow())
    statement = statement.on_conflict_do_update(
        index_elements=["name"],
        set_={"key_hash": statement.excluded.key_hash, "scopes": statement.excluded.scopes, "revoked_at": None},
    )
    for attempt in range(3):
        try:
            await session.exec(statement)
            await session.commit()
            break
        except IntegrityError:
            # ON CONFLICT arbitrates on `name` only: a concurrent insert of the same secret can still
            # collide on the unique `key_hash`. Once that row is committed, the retry updates it.
            await session.rollback()
            if attempt == 2:
                raise
    stored = select(ApiKey).where(ApiKey.name == name).execution_options(populate_existing=True)
    return (await session.exec(stored)).one()


async def authenticate(session: AsyncSession, *, secret: str) -> ApiKey | None:
    """The live key matching a presented secret, or None."""
    digest = hash_key(secret)
    key = (await session.exec(select(ApiKey).where(ApiKey.key_hash == digest))).first()
    if key is None or key.revoked_at is not None or not hmac.compare_digest(key.key_hash, digest):
        return None
    return key


_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`.")

# Keys are checked on every request; remembering a verdict briefly keeps the database off the hot
# path. A revoked key therefore stops working within this many seconds.
CACHE_SECONDS = 10.0


class _KeyCache:
    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, ApiKey | None]] = {}

    def get(self, digest: str) -> tuple[bool, ApiKey | None]:
        entry = self._entries.get(digest)
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def put(self, digest: str, key: ApiKey | None) -> None:
        if len(self._entries) > 10_000:  # bounded: wrong keys must not grow it without limit
            self._entries.clear()
        self._entries[digest] = (time.monotonic() + CACHE_SECONDS, key)


async def _lookup(request: Request, secret: str) -> ApiKey | None:
    cache: _KeyCache = getattr(request.app.state, "api_key_cache", None) or _KeyCache()
    request.app.state.api_key_cache = cache
    digest = hash_key(secret)
    found, key = cache.get(digest)
    if not found:
        # A short session of its own: the request must not hold a connection while it works.
        async with get_runtime(request).sessions() as session:
            key = await authenticate(session, secret=secret)
        cache.put(digest, key)
    return key


def require_scopes(*scopes: str) -> Callable[..., Awaitable[ApiKey]]:
    """Dependency that admits a request only with a live key holding every scope."""

    async def dependency(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> ApiKey:
        unauthorized = ProblemException(
            401,
            "Unauthorized",
            "A valid API key is required: send `Authorization: Bearer <key>`.",
            headers={"WWW-Authenticate": "Bearer"},
        )
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise unauthorized
        key = await _lookup(request, credentials.credentials)
        if key is None:
            raise unauthorized
        missing = sorted(set(scopes) - set(key.scopes))
        if missing:
            raise ProblemException(403, "Forbidden", f"The API key lacks the scope(s): {', '.join(missing)}.")
        return key

    return dependency
