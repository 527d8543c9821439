"""`Idempotency-Key` on POST requests: a retry within 24 hours gets the first answer and changes nothing.

The key is claimed in the same transaction as the work it guards, and the answer is stored with
it, so the key and the work commit together or not at all. A concurrent retry blocks on the key's
primary key until the first transaction ends, then reads its answer: twenty retries at once still
do the work once.
"""

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Header, Request
from fastapi.responses import JSONResponse
from sqlalchemy import JSON, Column, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field, SQLModel, col
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.db import SessionFactory
from leadrelay.events import utcnow
from leadrelay.problems import VALIDATION_PROBLEM, ProblemException
from leadrelay.runtime import ServiceRuntime

logger = logging.getLogger(__name__)

WINDOW = timedelta(hours=24)
"""How long a key remembers its first answer."""

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
REPLAYED_HEADER = "Idempotent-Replayed"
"""Set to `true` on an answer that repeats a stored one."""

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias=HEADER,
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        description=(
            "A unique value per logical request (a UUID is a good choice). A retry with the same key "
            "within 24 hours answers the first answer and changes nothing; the same key with another "
            "body is 422."
        ),
        examples=["9b2f7c1e-6a0d-4f3b-8e59-2d7c4a1b0e63"],
    ),
]


class IdempotencyRecord(SQLModel, table=True):
    """A request made with an Idempotency-Key, and the answer it got."""

    __tablename__ = "idempotency_record"

    owner: str = Field(primary_key=True, max_length=100)
    key: str = Field(primary_key=True, max_length=MAX_KEY_LENGTH)
    fingerprint: str = Field(max_length=64)
    status_code: int
    body: Any = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, index=True)


@dataclass(frozen=True)
class IdempotentRequest:
    """Who sent a request with which key, and a fingerprint of what it asked."""

    owner: str
    key: str
    fingerprint: str


@dataclass(frozen=True)
class Answer:
    """A status code and JSON body, and whether it repeats a stored answer."""

    status_code: int
    body: Any
    replayed: bool = False


def replayable(status_code: int, description: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI for an operation's success answer, which carries the replay header when it repeats a stored one."""
    return {
        status_code: {
            "description": description,
            "headers": {
                REPLAYED_HEADER: {
                    "description": f"`true` when this answer repeats the first answer to the same {HEADER}.",
                    "schema": {"type": "string", "enum": ["true"]},
                }
            },
        }
    }


def response(answer: Answer, *, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The answer as JSON, marked with the replay header when it repeats a stored one."""
    all_headers = dict(headers or {})
    if answer.replayed:
        all_headers[REPLAYED_HEADER] = "true"
    return JSONResponse(answer.body, status_code=answer.status_code, headers=all_headers)


def request_for(http: Request, *, owner: str, key: str | None, payload: Any) -> IdempotentRequest | None:
    """The idempotent request an HTTP request makes (its method and path, this payload), or None without a key."""
    return request_of(owner=owner, key=key, method=http.method, path=http.url.path, payload=payload)


def request_of(*, owner: str, key: str | None, method: str, path: str, payload: Any) -> IdempotentRequest | None:
    """The idempotent request, or None without a key; `payload` is the parsed body (key order does not matter)."""
    if key is None:
        return None
    canonical = json.dumps([method.upper(), path, payload], sort_keys=True, separators=(",", ":"), default=str)
    return IdempotentRequest(owner=owner, key=key, fingerprint=hashlib.sha256(canonical.encode()).hexdigest())


async def answer_once(
    session: AsyncSession,
    *,
    request: IdempotentRequest | None,
    work: Callable[[AsyncSession], Awaitable[Answer]],
) -> Answer:
    """Do `work` in this transaction and remember its answer under the key, or repeat the answer already given.

    Raises a 422 ProblemException when the key was used with another request. The caller commits.
    """
    if request is None:
        return await work(session)
    stored = await _claim(session, request=request)
    if stored is not None:
        if stored.fingerprint != request.fingerprint:
            raise ProblemException(
                422,
                "Idempotency-Key reused",
                f"The {HEADER} header names an earlier request with another method, path or body; use a new key.",
                type_=VALIDATION_PROBLEM,
            )
        return Answer(status_code=stored.status_code, body=stored.body, replayed=True)
    answer = await work(session)
    row = await session.get(IdempotencyRecord, (request.owner, request.key))
    if row is not None:
        row.status_code, row.body = answer.status_code, answer.body
        session.add(row)
    return answer


async def _claim(session: AsyncSession, *, request: IdempotentRequest) -> IdempotencyRecord | None:
    """Insert the key in this transaction; None if it was free, else the record that holds it."""
    now = utcnow()
    connection = await session.connection()
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    # An expired record no longer counts: the key is free again.
    await connection.execute(
        delete(IdempotencyRecord).where(
            col(IdempotencyRecord.owner) == request.owner,
            col(IdempotencyRecord.key) == request.key,
            col(IdempotencyRecord.created_at) < now - WINDOW,
        )
    )
    statement = (
        dialect.insert(IdempotencyRecord)
        .values(
            owner=request.owner,
            key=request.key,
            fingerprint=request.fingerprint,
            status_code=0,
            body={},
            created_at=now,
        )
        .on_conflict_do_nothing()
        .returning(col(IdempotencyRecord.key))
    )
    # Waits, on PostgreSQL, for a concurrent transaction holding the same key to end.
    if (await connection.execute(statement)).first() is not None:
        return None
    return await session.get(IdempotencyRecord, (request.owner, request.key), populate_existing=True)


async def prune(session: AsyncSession, *, now: datetime | None = None) -> int:
    """Forget records older than the window; the caller commits."""
    cutoff = (now or utcnow()) - WINDOW
    result = await session.exec(delete(IdempotencyRecord).where(col(IdempotencyRecord.created_at) < cutoff))
    return int(result.rowcount or 0)


async def prune_periodically(sessions: SessionFactory, *, interval: float = 3600.0) -> None:
    """Forget expired Idempotency-Key records, once an hour (run it as a job on one leader)."""
    while True:
        async with sessions() as session:
            removed = await prune(session)
            await session.commit()
        if removed:
            logger.info("pruned expired idempotency keys", extra={"count": removed})
        await asyncio.sleep(interval)


async def prune_expired_keys(runtime: ServiceRuntime[Any]) -> None:
    """Job of every service that takes the header: forget records older than 24 hours, once an hour."""
    await prune_periodically(runtime.sessions)
