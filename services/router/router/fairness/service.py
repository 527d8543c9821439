"""Picking a rep from a rotation kept in the database; the caller owns the transaction and commits."""

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from sqlalchemy import bindparam, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.db import per_dialect
from leadrelay.events import utcnow
from router.fairness.models import RotationMember, RotationPool
from router.fairness.rotation import Candidate, Pick, Rotation, Strategy, choose, validate

__all__ = ["Candidate", "Pick", "StoredRotations", "Strategy", "pick", "standings"]


async def pick(*, session: AsyncSession, pool_id: str, candidates: Sequence[Candidate], strategy: Strategy) -> Pick:
    """Choose one of the available `candidates` of a pool and record the pick in the caller's transaction.

    Picks from one pool are serialised on its row, so concurrent replicas produce exactly the
    sequence one process would. Raises ValueError for no candidates, a rep twice, a weight below 1
    or a negative load.
    """
    rotations = StoredRotations(session)
    chosen = await rotations.pick(pool_id=pool_id, candidates=candidates, strategy=strategy)
    await rotations.save()
    return chosen


class StoredRotations:
    """Picks for one transaction: each pool locked and read once, picked from in memory, written back by `save`.

    A run of leads picking from the same pools costs one lock and one read per pool instead of per
    pick; the pool rows stay locked until the transaction ends, so replicas still take turns.
    """

    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._pools: dict[str, tuple[RotationPool, dict[str, RotationMember], Rotation]] = {}

    async def pick(self, *, pool_id: str, candidates: Sequence[Candidate], strategy: Strategy) -> Pick:
        """Choose one of the available `candidates` of a pool; nothing is written until `save`."""
        validate(candidates)
        loaded = self._pools.get(pool_id)
        if loaded is None:
            pool = await _lock_pool(self._session, pool_id)
            members_of = (await self._session.exec(_MEMBERS, params={"pool_id": pool_id})).all()
            rows = {row.rep_id: row for row in members_of}
            members = {rep_id: row.member() for rep_id, row in rows.items()}
            loaded = self._pools[pool_id] = (pool, rows, Rotation(picks=pool.picks, members=members))
        return choose(loaded[2], pool_id=pool_id, candidates=candidates, strategy=strategy)

    async def save(self) -> None:
        """Write every pool picked from, and its members, back in the caller's transaction."""
        now = utcnow()
        changed: list[dict[str, Any]] = []
        pools: list[dict[str, Any]] = []
        for pool_id, (_pool, rows, rotation) in self._pools.items():
            for rep_id, member in rotation.members.items():
                row = rows.get(rep_id)
                if row is None or row.member() != member:
                    changed.append({"pool_id": pool_id, "rep_id": rep_id, **asdict(member), "updated_at": now})
            pools.append({"key": pool_id, "picks": rotation.picks, "updated_at": now})
        self._pools.clear()
        # Plain rows and two statements built once, instead of an object flushed per member: the
        # members read for the picks are read again (populate_existing) whenever a pool is locked.
        await self._session.flush()
        connection = await self._session.connection()
        if changed:
            await connection.execute(_SAVE_MEMBERS[connection.dialect.name], changed)
        if pools:
            await connection.execute(_SAVE_POOL, pools)


def _save_members(dialect: Any) -> Any:
    statement = dialect.insert(RotationMember)
    columns = ("credit", "last_seen", "last_won", "waiting_since", "wins", "updated_at")
    return statement.on_conflict_do_update(
        index_elements=[col(RotationMember.pool_id), col(RotationMember.rep_id)],
        set_={name: statement.excluded[name] for name in columns},
    )


_SAVE_MEMBERS = per_dialect(_save_members)
_SAVE_POOL = update(RotationPool).where(col(RotationPool.pool_id) == bindparam("key"))
"""A pool's picks and `updated_at`, from the parameters of the same names."""


async def standings(*, session: AsyncSession, pool_id: str) -> list[RotationMember]:
    """A pool's members as stored, by rep id (absent reps keep the credit they left with)."""
    query = select(RotationMember).where(RotationMember.pool_id == pool_id).order_by(col(RotationMember.rep_id))
    return list((await session.exec(query.execution_options(populate_existing=True))).all())


async def _lock_pool(session: AsyncSession, pool_id: str) -> RotationPool:
    # A write first: on SQLite it takes the database's write lock before anything is read; on
    # PostgreSQL it makes sure there is a row to lock.
    connection = await session.connection()
    await connection.execute(
        _ENSURE_POOL[connection.dialect.name], {"pool_id": pool_id, "picks": 0, "updated_at": utcnow()}
    )
    return (await session.exec(_LOCK_POOL, params={"pool_id": pool_id})).one()


# Built once with their values as parameters: a pick from a pool runs them for every run of leads.
_ENSURE_POOL = per_dialect(lambda dialect: dialect.insert(RotationPool).on_conflict_do_nothing())
_LOCK_POOL = (
    select(RotationPool)
    .where(col(RotationPool.pool_id) == bindparam("pool_id"))
    .with_for_update()
    .execution_options(populate_existing=True)
)
_MEMBERS = (
    select(RotationMember)
    .where(col(RotationMember.pool_id) == bindparam("pool_id"))
    .execution_options(populate_existing=True)
)
