"""API keys on SQLite and PostgreSQL: hashing, authentication, announcements, the scope dependency."""

import asyncio
from types import SimpleNamespace
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI
from sqlmodel import select

from leadrelay import apikeys
from leadrelay.apikeys import (
    ApiKey,
    Scope,
    Team,
    apply_announcements,
    authenticate,
    document_scopes,
    generate_key,
    hash_key,
    require_scopes,
)
from leadrelay.events import ApiKeyChanged, CloudEvent, new_event, utcnow
from leadrelay.problems import PROBLEM_JSON, install_problem_handlers
from leadrelay.testing import Storage, wait_until


def _key(secret: str, *, key_id: str = "key_one", scopes: list[Scope] | None = None, version: int = 1) -> ApiKey:
    return ApiKey(
        id=key_id, name=key_id, team=Team.SALES, scopes=scopes or [], key_hash=hash_key(secret), version=version
    )


def _announced(key: ApiKey) -> CloudEvent[ApiKeyChanged]:
    return new_event(key.announcement(), source="leadrelay/intake")


def test_hash_is_not_the_secret_and_is_stable() -> None:
    secret = generate_key()
    digest = hash_key(secret)
    assert digest != secret
    assert secret not in digest
    assert len(digest) == 64
    assert int(digest, 16) >= 0
    assert hash_key(secret) == digest
    assert hash_key(secret + "x") != digest


def test_generated_keys_and_ids_are_prefixed_and_unique() -> None:
    keys = {generate_key() for _ in range(50)}
    assert len(keys) == 50
    assert all(key.startswith(apikeys.KEY_PREFIX) and len(key) > 40 for key in keys)
    ids = {apikeys.generate_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(key_id.startswith(apikeys.ID_PREFIX) for key_id in ids)


def test_an_announcement_carries_the_hash_never_the_secret() -> None:
    secret = generate_key()
    payload = _announced(_key(secret, scopes=[Scope.LEADS_READ])).to_bytes().decode()
    assert secret not in payload
    assert hash_key(secret) in payload


async def test_authenticate_finds_a_live_key_and_rejects_others(router_db: Storage) -> None:
    secret, revoked = generate_key(), generate_key()
    async with router_db.sessions() as session:
        session.add(_key(secret, scopes=[Scope.LEADS_WRITE]))
        session.add(_key(revoked, key_id="key_two").sqlmodel_update({"revoked_at": utcnow()}))
        await session.commit()
    async with router_db.sessions() as session:
        key = await authenticate(session, secret=secret)
        assert key is not None
        assert (key.id, key.team, key.scopes) == ("key_one", Team.SALES, [Scope.LEADS_WRITE])
        assert await authenticate(session, secret=revoked) is None
        assert await authenticate(session, secret=generate_key()) is None
        assert await authenticate(session, secret="") is None
        assert await authenticate(session, secret=hash_key(secret)) is None  # the hash is not a key


async def test_announcements_apply_in_version_order_and_redelivery_changes_nothing(router_db: Storage) -> None:
    secret = generate_key()
    created = _key(secret, scopes=[Scope.LEADS_READ])
    widened = _key(secret, scopes=[Scope.LEADS_READ, Scope.LEADS_WRITE], version=2)
    revoked = _key(secret, scopes=[Scope.LEADS_READ, Scope.LEADS_WRITE], version=3).sqlmodel_update(
        {"revoked_at": utcnow()}
    )
    async with router_db.sessions() as session:
        await apply_announcements([_announced(created), _announced(widened)], session)
        await session.commit()
    async with router_db.sessions() as session:
        key = await authenticate(session, secret=secret)
        assert key is not None
        assert key.scopes == [Scope.LEADS_READ, Scope.LEADS_WRITE]
        assert key.version == 2
        # An older announcement (a re-announcement overtaken by a change) is ignored.
        await apply_announcements([_announced(created)], session)
        await session.commit()
        assert (await session.get(ApiKey, "key_one", populate_existing=True)).version == 2  # type: ignore[union-attr]
        await apply_announcements([_announced(revoked), _announced(widened)], session)
        await session.commit()
    async with router_db.sessions() as session:
        assert await authenticate(session, secret=secret) is None
        assert len((await session.exec(select(ApiKey))).all()) == 1


async def test_a_secret_stored_under_another_id_is_replaced(router_db: Storage) -> None:
    secret = generate_key()
    async with router_db.sessions() as session:
        await apply_announcements([_announced(_key(secret, key_id="key_old"))], session)
        await apply_announcements([_announced(_key(secret, key_id="key_new", scopes=[Scope.ADMIN]))], session)
        await session.commit()
    async with router_db.sessions() as session:
        key = await authenticate(session, secret=secret)
    assert key is not None
    assert (key.id, key.scopes) == ("key_new", [Scope.ADMIN])


async def test_require_scopes_answers_401_403_and_admits(router_db: Storage) -> None:
    writer, reader = generate_key(), generate_key()
    async with router_db.sessions() as session:
        session.add(_key(writer, key_id="key_writer", scopes=[Scope.LEADS_READ, Scope.LEADS_WRITE]))
        session.add(_key(reader, key_id="key_reader", scopes=[Scope.LEADS_READ]))
        await session.commit()

    app = FastAPI()
    install_problem_handlers(app)
    app.state.runtime = SimpleNamespace(sessions=router_db.sessions)

    @app.post("/leads")
    async def create(key: Annotated[ApiKey, Depends(require_scopes(Scope.LEADS_WRITE))]) -> dict[str, str]:
        return {"key": key.id}

    @app.get("/open")
    async def unauthenticated() -> dict[str, str]:
        return {}

    document_scopes(app)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        missing = await client.post("/leads")
        wrong = await client.post("/leads", headers={"Authorization": f"Bearer {generate_key()}"})
        basic = await client.post("/leads", headers={"Authorization": f"Basic {writer}"})
        forbidden = await client.post("/leads", headers={"Authorization": f"Bearer {reader}"})
        admitted = await client.post("/leads", headers={"Authorization": f"Bearer {writer}"})
        document = (await client.get("/openapi.json")).json()

    for response in (missing, wrong, basic):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.headers["content-type"] == PROBLEM_JSON
    assert forbidden.status_code == 403
    assert "leads:write" in forbidden.json()["detail"]
    assert admitted.status_code == 200
    assert admitted.json() == {"key": "key_writer"}
    assert document["paths"]["/leads"]["post"]["x-required-scopes"] == ["leads:write"]
    assert "`leads:write`" in document["paths"]["/leads"]["post"]["description"]
    assert "x-required-scopes" not in document["paths"]["/open"]["get"]


async def test_the_key_cache_looks_a_key_up_once_for_every_request_waiting_on_it() -> None:
    cache = apikeys.KeyCache()
    key = _key(generate_key())
    lookups = 0
    release = asyncio.Event()

    async def load() -> ApiKey | None:
        nonlocal lookups
        lookups += 1
        await release.wait()
        return key

    waiting = [asyncio.create_task(cache.verdict("digest", load)) for _ in range(50)]

    async def started() -> bool:
        return lookups == 1

    await wait_until(started, timeout=5, what="the lookup started")
    waiting[0].cancel()  # a client gone: the others still get the verdict
    release.set()
    verdicts = await asyncio.gather(*waiting[1:])
    assert verdicts == [key] * 49
    assert lookups == 1
    assert await cache.verdict("digest", load) is key  # remembered
    assert lookups == 1


async def test_a_verdict_loaded_across_a_key_change_is_not_remembered() -> None:
    cache = apikeys.KeyCache()
    release = asyncio.Event()
    lookups = 0

    async def load() -> ApiKey | None:
        nonlocal lookups
        lookups += 1
        await release.wait()
        return None

    pending = asyncio.create_task(cache.verdict("digest", load))

    async def started() -> bool:
        return lookups == 1

    await wait_until(started, timeout=5, what="the lookup started")
    cache.clear()  # the key changed while the lookup ran
    release.set()
    assert await pending is None
    assert cache.get("digest") == (False, None)


async def test_a_failed_lookup_fails_its_waiters_and_is_tried_again() -> None:
    cache = apikeys.KeyCache()
    calls = 0

    async def load() -> ApiKey | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionRefusedError("database down")
        return None

    with pytest.raises(ConnectionRefusedError):
        await cache.verdict("digest", load)
    assert await cache.verdict("digest", load) is None
    assert calls == 2
