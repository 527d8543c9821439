"""The key registry: create, read, revoke, seed, and announce keys to every service."""

from collections.abc import Mapping, Sequence

from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay import audit, outbox
from leadrelay.apikeys import ApiKey, Scope, Team, generate_id, generate_key, hash_key
from leadrelay.db import upsert_insert
from leadrelay.events import new_event, utcnow

SOURCE = "leadrelay/intake"


def announce(session: AsyncSession, keys: Sequence[ApiKey]) -> None:
    """Queue `apikey.changed` for keys in the caller's transaction."""
    for key in keys:
        outbox.add(session, new_event(key.announcement(), source=SOURCE))


async def create(
    session: AsyncSession, *, name: str, team: Team, scopes: Sequence[Scope], actor: ApiKey | None
) -> tuple[ApiKey, str]:
    """Create a key, audit and announce it, commit; returns the key and its secret."""
    secret = generate_key()
    key = ApiKey(id=generate_id(), name=name, team=team, scopes=list(scopes), key_hash=hash_key(secret))
    session.add(key)
    audit.record(
        session,
        actor=actor,
        action="key.created",
        target=key.id,
        detail={"name": name, "team": team, "scopes": key.scopes},
    )
    announce(session, [key])
    await session.commit()
    return key, secret


async def get(session: AsyncSession, *, key_id: str) -> ApiKey | None:
    """A key by id."""
    return await session.get(ApiKey, key_id)


async def get_all(session: AsyncSession) -> list[ApiKey]:
    """Every key, newest first."""
    return list((await session.exec(select(ApiKey).order_by(col(ApiKey.created_at).desc()))).all())


async def revoke(session: AsyncSession, *, key: ApiKey, actor: ApiKey | None) -> ApiKey:
    """Revoke a key everywhere (audited and announced) and commit; revoking twice changes nothing."""
    if key.revoked_at is not None:
        return key
    now = utcnow()
    key.sqlmodel_update({"revoked_at": now, "updated_at": now, "version": key.version + 1})
    session.add(key)
    audit.record(session, actor=actor, action="key.revoked", target=key.id, detail={"name": key.name})
    announce(session, [key])
    await session.commit()
    return key


async def seed(
    session: AsyncSession, *, key_id: str, name: str, team: Team, scopes: Sequence[Scope], secret: str
) -> ApiKey:
    """Make the key `key_id` exist with exactly this secret, team and scopes; announce any change; commit.

    Safe when several intake workers seed at once: the insert ignores a conflict, and an update
    happens only where the stored key differs.
    """
    wanted = {"name": name, "team": team, "scopes": sorted(scopes), "key_hash": hash_key(secret), "revoked_at": None}
    now = utcnow()
    inserted = await session.exec(
        upsert_insert(session, ApiKey)
        .values(id=key_id, version=1, created_at=now, updated_at=now, **wanted)
        .on_conflict_do_nothing()
    )
    changed = bool(inserted.rowcount)
    stored = await _fresh(session, key_id)
    if not changed and stored is not None and _differs(stored, wanted):
        changed = True
        await session.exec(
            update(ApiKey).where(col(ApiKey.id) == key_id).values(**wanted, updated_at=now, version=ApiKey.version + 1)
        )
        stored = await _fresh(session, key_id)
    if stored is None:
        raise LookupError(f"another key holds the secret of {key_id}")  # two seeded keys share one secret
    if changed:
        announce(session, [stored])
    await session.commit()
    return stored


async def retire(session: AsyncSession, *, key_ids: Sequence[str]) -> list[ApiKey]:
    """Revoke seeded keys that must not live here (development and demo keys in production); commit."""
    retired = []
    for key_id in key_ids:
        key = await session.get(ApiKey, key_id)
        if key is not None and key.revoked_at is None:
            retired.append(await revoke(session, key=key, actor=None))
    return retired


async def announce_all(session: AsyncSession) -> int:
    """Queue the current state of every key again (for services that may have missed a change); commit."""
    keys = list((await session.exec(select(ApiKey))).all())
    announce(session, keys)
    await session.commit()
    return len(keys)


async def _fresh(session: AsyncSession, key_id: str) -> ApiKey | None:
    query = select(ApiKey).where(col(ApiKey.id) == key_id).execution_options(populate_existing=True)
    return (await session.exec(query)).first()


def _differs(key: ApiKey, wanted: Mapping[str, object]) -> bool:
    return any(getattr(key, field) != value for field, value in wanted.items())
