"""Picking a rep from a rotation kept in the database; the caller owns the transaction and commits."""

from collections.abc import Sequence

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.db import upsert_insert
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
            query = (
                select(RotationMember)
                .where(RotationMember.pool_id == pool_id)
                .execution_options(populate_existing=True)
            )
            rows = {row.rep_id: row for row in (await self._session.exec(query)).all()}
            members = {rep_id: row.member() for rep_id, row in rows.items()}
            loaded = self._pools[pool_id] = (pool, rows, Rotation(picks=pool.picks, members=members))
        return choose(loaded[2], pool_id=pool_id, candidates=candidates, strategy=strategy)

    async def save(self) -> None:
        """Write every pool picked from, and its members, back in the caller's transaction."""
        now = utcnow()
        for pool_id, (pool, rows, rotation) in self._pools.items():
            for rep_id, member in rotation.members.items():
                row = rows.get(rep_id) or RotationMember(pool_id=pool_id, rep_id=rep_id)
                if rep_id in rows and row.member() == member:
                    continue
                row.credit, row.last_seen = member.credit, member.last_seen
                row.last_won, row.waiting_since, row.wins = member.last_won, member.waiting_since, member.wins
                row.updated_at = now
                self._session.add(row)
            pool.picks = rotation.picks
            pool.updated_at = now
            self._session.add(pool)
        self._pools.clear()
        await self._session.flush()


async def standings(*, session: AsyncSession, pool_id: str) -> list[RotationMember]:
    """A pool's members as stored, by rep id (absent reps keep the credit they left with)."""
    query = select(RotationMember).where(RotationMember.pool_id == pool_id).order_by(col(RotationMember.rep_id))
    return list((await session.exec(query.execution_options(populate_existing=True))).all())


async def _lock_pool(session: AsyncSession, pool_id: str) -> RotationPool:
    # A write first: on SQLite it takes the database's write lock before anything is read; on
    # PostgreSQL it makes sure there is a row to lock.
    await session.exec(
        upsert_insert(session, RotationPool)
        .values(pool_id=pool_id, picks=0, updated_at=utcnow())
        .on_conflict_do_nothing()
    )
    query = (
        select(RotationPool)
        .where(RotationPool.pool_id == pool_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.exec(query)).one()
