"""The key registry on SQLite and PostgreSQL: seeding, revocation, audit and announcements."""

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from intake.keys import service
from leadrelay.apikeys import ApiKey, Scope, Team, authenticate, generate_key
from leadrelay.audit import AuditEntry
from leadrelay.db import create_engine, create_session_factory
from leadrelay.events import ApiKeyChanged, parse_as
from leadrelay.outbox import OutboxMessage
from leadrelay.testing import Storage, migrated, migrations_of


@pytest.fixture
async def intake_db(database_url: str) -> AsyncIterator[Storage]:
    """Intake's schema on the test's backend."""
    async with migrated(database_url, migrations_of("intake")) as storage:
        yield storage


async def _announced_versions(storage: Storage) -> list[tuple[str, int]]:
    async with storage.sessions() as session:
        query = (
            select(OutboxMessage).where(OutboxMessage.event_type == "apikey.changed").order_by(col(OutboxMessage.id))
        )
        rows = (await session.exec(query)).all()
    return [
        (change.data.key_id, change.data.version) for change in (parse_as(row.payload, ApiKeyChanged) for row in rows)
    ]


async def test_concurrent_seeds_of_one_key_leave_one_key_announced_once(intake_db: Storage) -> None:
    # Several intake workers starting at once each seed the development key.
    secret = generate_key()
    engines = [create_engine(intake_db.url) for _ in range(8)]
    try:

        async def seed(engine: AsyncEngine) -> None:
            async with create_session_factory(engine)() as session:
                await service.seed(
                    session,
                    key_id="key_development",
                    name="development",
                    team=Team.OPS,
                    scopes=list(Scope),
                    secret=secret,
                )

        await asyncio.gather(*(seed(engine) for engine in engines))
    finally:
        await asyncio.gather(*(engine.dispose() for engine in engines))
    async with intake_db.sessions() as session:
        assert len((await session.exec(select(ApiKey))).all()) == 1
        key = await authenticate(session, secret=secret)
    assert key is not None
    assert (key.id, key.team, set(key.scopes)) == ("key_development", Team.OPS, set(Scope))
    assert await _announced_versions(intake_db) == [("key_development", 1)]


async def test_seeding_again_changes_nothing_and_a_new_secret_is_a_new_version(intake_db: Storage) -> None:
    old, new = generate_key(), generate_key()
    arguments = {"key_id": "key_demo_sales", "name": "demo-sales", "team": Team.SALES, "scopes": [Scope.SLA_APPROVE]}
    async with intake_db.sessions() as session:
        await service.seed(session, secret=old, **arguments)  # type: ignore[arg-type]
        await service.seed(session, secret=old, **arguments)  # type: ignore[arg-type]
        assert await _announced_versions(intake_db) == [("key_demo_sales", 1)]
        await service.seed(session, secret=new, **arguments)  # type: ignore[arg-type]
    async with intake_db.sessions() as session:
        assert await authenticate(session, secret=old) is None
        key = await authenticate(session, secret=new)
    assert key is not None
    assert key.version == 2
    assert await _announced_versions(intake_db) == [("key_demo_sales", 1), ("key_demo_sales", 2)]


async def test_create_and_revoke_are_audited_and_announced(intake_db: Storage) -> None:
    async with intake_db.sessions() as session:
        admin, _ = await service.create(session, name="ops-admin", team=Team.OPS, scopes=[Scope.ADMIN], actor=None)
        key, secret = await service.create(
            session, name="hubspot", team=Team.INTEGRATION, scopes=[Scope.LEADS_WRITE], actor=admin
        )
        assert await authenticate(session, secret=secret) is not None
        await service.revoke(session, key=key, actor=admin)
        await service.revoke(session, key=key, actor=admin)  # twice: nothing more happens
        assert await authenticate(session, secret=secret) is None
        entries = (await session.exec(select(AuditEntry).order_by(AuditEntry.id))).all()  # type: ignore[arg-type]
    assert [(entry.action, entry.target, entry.actor_key_id) for entry in entries] == [
        ("key.created", admin.id, None),
        ("key.created", key.id, admin.id),
        ("key.revoked", key.id, admin.id),
    ]
    assert all(secret not in str(entry.detail) for entry in entries)
    assert await _announced_versions(intake_db) == [(admin.id, 1), (key.id, 1), (key.id, 2)]


async def test_retire_revokes_well_known_keys_and_announce_all_covers_every_key(intake_db: Storage) -> None:
    async with intake_db.sessions() as session:
        await service.seed(
            session, key_id="key_development", name="development", team=Team.OPS, scopes=[], secret=generate_key()
        )
        retired = await service.retire(session, key_ids=["key_development", "key_absent"])
        assert [key.id for key in retired] == ["key_development"]
        assert await service.retire(session, key_ids=["key_development"]) == []
        assert await service.announce_all(session) == 1
    assert await _announced_versions(intake_db) == [
        ("key_development", 1),
        ("key_development", 2),
        ("key_development", 2),
    ]
