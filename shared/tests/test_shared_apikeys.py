"""API keys on SQLite and PostgreSQL (intake's schema holds the api_key table)."""

import asyncio
from types import SimpleNamespace
from typing import Annotated

import httpx
from fastapi import Depends, FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from leadrelay import apikeys
from leadrelay.apikeys import ApiKey, authenticate, generate_key, hash_key, require_scopes, upsert
from leadrelay.db import create_engine, create_session_factory
from leadrelay.events import utcnow
from leadrelay.problems import PROBLEM_JSON, install_problem_handlers
from leadrelay.testing import Storage


def test_hash_is_not_the_secret_and_is_stable() -> None:
    secret = generate_key()
    digest = hash_key(secret)
    assert digest != secret
    assert secret not in digest
    assert len(digest) == 64
    assert int(digest, 16) >= 0
    assert hash_key(secret) == digest
    assert hash_key(secret + "x") != digest


def test_generated_keys_are_prefixed_and_unique() -> None:
    keys = {generate_key() for _ in range(50)}
    assert len(keys) == 50
    assert all(key.startswith(apikeys.KEY_PREFIX) and len(key) > 40 for key in keys)


async def test_authenticate_finds_a_live_key(intake_db: Storage) -> None:
    secret = generate_key()
    async with intake_db.sessions() as session:
        await upsert(session, name="crm", secret=secret, scopes=["leads:write"])
    async with intake_db.sessions() as session:
        stored = (await session.exec(select(ApiKey))).one()
        assert stored.key_hash == hash_key(secret)
        assert secret not in (stored.key_hash, stored.name)  # only the hash is kept
        key = await authenticate(session, secret=secret)
    assert key is not None
    assert (key.name, key.scopes) == ("crm", ["leads:write"])


async def test_authenticate_rejects_unknown_and_revoked_keys(intake_db: Storage) -> None:
    secret = generate_key()
    async with intake_db.sessions() as session:
        await upsert(session, name="crm", secret=secret, scopes=[])
        assert await authenticate(session, secret=generate_key()) is None
        assert await authenticate(session, secret="") is None
        assert await authenticate(session, secret=hash_key(secret)) is None  # the hash is not a key

        key = (await session.exec(select(ApiKey))).one()
        key.revoked_at = utcnow()
        session.add(key)
        await session.commit()
    async with intake_db.sessions() as session:
        assert await authenticate(session, secret=secret) is None


async def test_upsert_replaces_the_secret_and_revives_the_key(intake_db: Storage) -> None:
    old, new = generate_key(), generate_key()
    async with intake_db.sessions() as session:
        key = await upsert(session, name="crm", secret=old, scopes=["a"])
        key.revoked_at = utcnow()
        session.add(key)
        await session.commit()
        await upsert(session, name="crm", secret=new, scopes=["a", "b"])
    async with intake_db.sessions() as session:
        assert len((await session.exec(select(ApiKey))).all()) == 1
        assert await authenticate(session, secret=old) is None
        revived = await authenticate(session, secret=new)
    assert revived is not None
    assert revived.scopes == ["a", "b"]


async def test_require_scopes_answers_401_403_and_admits(intake_db: Storage) -> None:
    writer, reader = generate_key(), generate_key()
    async with intake_db.sessions() as session:
        await upsert(session, name="writer", secret=writer, scopes=["leads:read", "leads:write"])
        await upsert(session, name="reader", secret=reader, scopes=["leads:read"])

    app = FastAPI()
    install_problem_handlers(app)
    app.state.runtime = SimpleNamespace(sessions=intake_db.sessions)

    @app.post("/leads")
    async def create(key: Annotated[ApiKey, Depends(require_scopes("leads:write"))]) -> dict[str, str]:
        return {"key": key.name}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        missing = await client.post("/leads")
        wrong = await client.post("/leads", headers={"Authorization": f"Bearer {generate_key()}"})
        basic = await client.post("/leads", headers={"Authorization": f"Basic {writer}"})
        forbidden = await client.post("/leads", headers={"Authorization": f"Bearer {reader}"})
        admitted = await client.post("/leads", headers={"Authorization": f"Bearer {writer}"})

    for response in (missing, wrong, basic):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.headers["content-type"] == PROBLEM_JSON
    assert forbidden.status_code == 403
    assert "leads:write" in forbidden.json()["detail"]
    assert admitted.status_code == 200
    assert admitted.json() == {"key": "writer"}


async def test_concurrent_upserts_of_one_name_leave_one_key_that_authenticates(intake_db: Storage) -> None:
    # Several intake workers starting at once each seed the development key.
    secret = generate_key()
    engines = [create_engine(intake_db.url) for _ in range(8)]
    try:

        async def seed(engine: AsyncEngine) -> None:
            async with create_session_factory(engine)() as session:
                await upsert(session, name="development", secret=secret, scopes=["leads:read"])

        await asyncio.gather(*(seed(engine) for engine in engines))
    finally:
        await asyncio.gather(*(engine.dispose() for engine in engines))
    async with intake_db.sessions() as session:
        assert len((await session.exec(select(ApiKey))).all()) == 1
        key = await authenticate(session, secret=secret)
    assert key is not None
    assert (key.name, key.scopes) == ("development", ["leads:read"])
