"""Rotations kept in the database: the stored picks follow the pure rotation, and replicas never skip nor double."""

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Sequence

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from leadrelay.db import SessionFactory, create_engine, create_session_factory, run_migrations
from router.fairness import service
from router.fairness.models import RotationMember, RotationPool
from router.fairness.rotation import Candidate, Entry, Reason, Strategy, simulate
from router.main import MIGRATIONS_DIR

WRR = Strategy.WEIGHTED_ROUND_ROBIN


def _reps(*names: str, weight: int = 1) -> list[Candidate]:
    return [Candidate(name, weight) for name in names]


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated router database on the test's backend."""
    engine = create_engine(database_url)
    try:
        await run_migrations(engine, MIGRATIONS_DIR)
        yield engine
    finally:
        await engine.dispose()


async def _pick(
    sessions: SessionFactory, candidates: Sequence[Candidate], *, pool_id: str = "team-emea", strategy: Strategy = WRR
) -> service.Pick:
    async with sessions() as session:
        chosen = await service.pick(session=session, pool_id=pool_id, candidates=candidates, strategy=strategy)
        await session.commit()
    return chosen


async def test_stored_picks_follow_the_rotation_as_reps_leave_and_come_back(engine: AsyncEngine) -> None:
    sessions = create_session_factory(engine)
    everyone = _reps("ann", "bob", "cy", "dee")
    # Dee is away for a while (leave), then ann is toggled off, then both are back.
    schedule = [everyone] * 40 + [everyone[:3]] * 30 + [everyone[1:3]] * 20 + [everyone] * 60

    picks = [await _pick(sessions, candidates) for candidates in schedule]

    assert [pick.rep_id for pick in picks] == simulate(schedule)
    assert [pick.sequence for pick in picks] == list(range(len(schedule)))
    final = Counter(pick.rep_id for pick in picks[-60:])
    assert sorted(final.values()) == [15, 15, 15, 15]
    back = picks[90]
    assert {c.rep_id: c.entry for c in back.candidates} == {
        "ann": Entry.RETURNED,
        "bob": Entry.STAYED,
        "cy": Entry.STAYED,
        "dee": Entry.RETURNED,
    }


async def test_a_run_of_picks_in_one_transaction_stores_what_picks_one_by_one_store(engine: AsyncEngine) -> None:
    sessions = create_session_factory(engine)
    schedule = [_reps("ann", "bob")] * 3 + [_reps("ann", "bob", "cy")] * 5
    for candidates in schedule:
        await _pick(sessions, candidates, pool_id="one-by-one")
    for candidates in schedule[:3]:
        await _pick(sessions, candidates, pool_id="in-a-run")
    async with sessions() as session:
        rotations = service.StoredRotations(session)
        for candidates in schedule[3:]:  # cy joins: a new member saved with known ones, and a second pool
            await rotations.pick(pool_id="in-a-run", candidates=candidates, strategy=WRR)
            await rotations.pick(pool_id="other", candidates=candidates, strategy=WRR)
        await rotations.save()
        await session.commit()

    def stored(rows: Sequence[RotationMember]) -> list[tuple[object, ...]]:
        return [(row.rep_id, row.credit, row.last_seen, row.last_won, row.waiting_since, row.wins) for row in rows]

    async with sessions() as session:
        in_a_run = stored(await service.standings(session=session, pool_id="in-a-run"))
        assert in_a_run == stored(await service.standings(session=session, pool_id="one-by-one"))
        assert [row[0] for row in in_a_run] == ["ann", "bob", "cy"]
        picks = {pool.pool_id: pool.picks for pool in (await session.exec(select(RotationPool))).all()}
    assert picks == {"one-by-one": len(schedule), "in-a-run": len(schedule), "other": len(schedule) - 3}


async def test_a_pick_explains_every_candidate_and_is_recorded(engine: AsyncEngine) -> None:
    sessions = create_session_factory(engine)

    reps = [*_reps("ann", "bob"), Candidate("cy", weight=2)]
    first = await _pick(sessions, reps)
    second = await _pick(sessions, reps)

    assert (first.rep_id, second.rep_id) == ("cy", "ann")
    assert second.as_record() == {
        "pool_id": "team-emea",
        "strategy": "weighted_round_robin",
        "sequence": 1,
        "rep_id": "ann",
        "candidates": [
            {
                "rep_id": "ann",
                "weight": 1,
                "load": 0,
                "chosen": True,
                "reason": "highest_credit",
                "entry": "stayed",
                "credit_before": 0.25,
                "credit_compared": 0.5,
                "credit_after": -0.5,
            },
            {
                "rep_id": "bob",
                "weight": 1,
                "load": 0,
                "chosen": False,
                "reason": "tied_credit_rep_id",
                "entry": "stayed",
                "credit_before": 0.25,
                "credit_compared": 0.5,
                "credit_after": 0.5,
            },
            {
                "rep_id": "cy",
                "weight": 2,
                "load": 0,
                "chosen": False,
                "reason": "lower_credit",
                "entry": "stayed",
                "credit_before": -0.5,
                "credit_compared": 0.0,
                "credit_after": 0.0,
            },
        ],
    }
    async with sessions() as session:
        members = await service.standings(session=session, pool_id="team-emea")
        pool = (await session.exec(select(RotationPool))).one()
    assert [(m.rep_id, m.wins, m.last_won, m.last_seen) for m in members] == [
        ("ann", 1, 1, 1),
        ("bob", 0, -1, 1),
        ("cy", 1, 0, 1),
    ]
    assert pool.picks == 2


async def test_least_loaded_picks_by_load_per_weight_and_records_the_pick(engine: AsyncEngine) -> None:
    sessions = create_session_factory(engine)
    candidates = [Candidate("ann", weight=2, load=4), Candidate("bob", weight=1, load=1), Candidate("cy", 1, 3)]

    chosen = await _pick(sessions, candidates, strategy=Strategy.LEAST_LOADED)
    tied = [await _pick(sessions, _reps("ann", "bob", "cy"), strategy=Strategy.LEAST_LOADED) for _ in range(3)]

    assert chosen.rep_id == "bob"
    assert [c.reason for c in chosen.candidates] == [Reason.HIGHER_LOAD, Reason.LOWEST_LOAD, Reason.HIGHER_LOAD]
    assert [pick.rep_id for pick in tied] == ["ann", "cy", "bob"]
    async with sessions() as session:
        members = await service.standings(session=session, pool_id="team-emea")
    assert {m.rep_id: m.wins for m in members} == {"ann": 1, "bob": 2, "cy": 1}


async def test_pools_keep_separate_rotations(engine: AsyncEngine) -> None:
    sessions = create_session_factory(engine)
    reps = _reps("ann", "bob", "cy")

    emea = [(await _pick(sessions, reps, pool_id="emea")).rep_id for _ in range(2)]
    apac = [(await _pick(sessions, reps, pool_id="apac")).rep_id for _ in range(3)]

    assert emea == ["ann", "bob"]
    assert apac == ["ann", "bob", "cy"]
    assert (await _pick(sessions, reps, pool_id="emea")).rep_id == "cy"


async def test_bad_candidates_are_refused_and_change_nothing(engine: AsyncEngine) -> None:
    sessions = create_session_factory(engine)
    async with sessions() as session:
        with pytest.raises(ValueError, match="weight must be at least 1"):
            await service.pick(session=session, pool_id="p", candidates=[Candidate("ann", weight=0)], strategy=WRR)
        await session.commit()
        assert (await session.exec(select(RotationPool))).all() == []
        assert (await session.exec(select(RotationMember))).all() == []


async def test_replicas_picking_from_one_pool_at_once_never_skip_nor_double_a_rep(
    backend: str, database_url: str
) -> None:
    # Separate engines stand for separate router processes; on PostgreSQL each also runs several
    # picks at once over its connection pool.
    replicas, tasks, picks_each = (3, 4, 10) if backend == "postgres" else (2, 1, 15)
    engines = [create_engine(database_url) for _ in range(replicas)]
    reps = _reps("ann", "bob", "cy", "dee", "eve")
    try:
        await run_migrations(engines[0], MIGRATIONS_DIR)
        factories = [create_session_factory(engine) for engine in engines]

        async def worker(sessions: SessionFactory) -> list[service.Pick]:
            return [await _pick(sessions, reps) for _ in range(picks_each)]

        results = await asyncio.gather(*(worker(sessions) for sessions in factories for _ in range(tasks)))
    finally:
        await asyncio.gather(*(engine.dispose() for engine in engines))

    picks = sorted((pick for result in results for pick in result), key=lambda pick: pick.sequence)
    total = replicas * tasks * picks_each
    assert [pick.sequence for pick in picks] == list(range(total))  # no pick lost or made twice
    sequence = [pick.rep_id for pick in picks]
    assert sequence == simulate([reps] * total)  # exactly what one process would have picked
    assert all(len(set(sequence[start : start + len(reps)])) == len(reps) for start in range(total - len(reps) + 1))
    counts = Counter(sequence)
    assert all(abs(counts[rep.rep_id] - total / len(reps)) <= 1 for rep in reps)
