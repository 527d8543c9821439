"""Simulate and replay: routing decisions made in memory, with no side effects.

Both read the database and write nothing: the roster (reps, teams, loads) and the rulesets are
read, picks go through a `MemoryChooser`, and the loads a decision counts stay in the in-memory
`Roster`. Nothing is stored, no credit is spent, no event is published.
"""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy
from sqlalchemy import Text, cast
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.agreements.service import DocumentInvalid
from leadrelay.events import LeadScored
from leadrelay.problems import ProblemException
from router.assignments.models import Assignment, Outcome, RoutedLead
from router.assignments.roster import RosterCache
from router.assignments.routing import MemoryChooser, Roster, Routing, route
from router.fairness.models import RotationMember, RotationPool
from router.fairness.rotation import Rotation
from router.rules.document import RoutingDocument, check
from router.rules.engine import CompiledRules, compile_rules, facts_of
from router.rules.service import Rulesets
from router.simulation.schemas import (
    ChangedLead,
    LeadSketch,
    Placement,
    Replay,
    RepShift,
    Shift,
    SimulatedRouting,
    TeamShift,
)

DRAFT_VERSION = "draft"
"""The version a simulated decision records for a document sent with the request."""
CHUNK = 1000
"""Scored leads read per query round trip, and routed per hand-off to a worker thread."""
CHANGED_SHOWN = 100


async def ruleset(
    *, session: AsyncSession, rulesets: Rulesets, document: RoutingDocument | None, version: int | None
) -> CompiledRules:
    """The draft `document` (checked like a new version), else stored `version`, else the active ruleset."""
    if document is not None and version is not None:
        raise DocumentInvalid([("/version", "send `document` or `version`, not both")], prefix="")
    if document is not None:
        errors = check(document)
        if errors:
            raise DocumentInvalid(errors)
        return compile_rules(document, version=DRAFT_VERSION)
    if version is not None:
        try:
            return await rulesets.version(session, version)
        except LookupError:
            raise _unknown_version(version, field="version") from None
    return await rulesets.active(session)


def _unknown_version(version: int, *, field: str | None) -> ProblemException:
    detail = f"No routing version {version}."
    if field is None:
        return ProblemException(404, "Not Found", detail)
    return DocumentInvalid([(f"/{field}", f"no routing version {version}")], prefix="")


async def stored_rotations(*, session: AsyncSession) -> MemoryChooser:
    """A chooser starting from every rotation's stored standings (a copy: picks change nothing stored)."""
    rotations = {
        pool_id: Rotation(picks=picks)
        for pool_id, picks in (await session.exec(select(RotationPool.pool_id, RotationPool.picks))).all()
    }
    for row in (await session.exec(select(RotationMember))).all():
        rotations.setdefault(row.pool_id, Rotation()).members[row.rep_id] = row.member()
    return MemoryChooser(rotations)


def to_scored(leads: Sequence[LeadScored | LeadSketch], *, at: datetime) -> list[LeadScored]:
    """Every lead as a lead.scored; a sketch without an id is `lead-N` (its place from 1), scored at `at`."""
    return [
        lead.scored(lead_id=lead.lead_id or f"lead-{number}", at=at) if isinstance(lead, LeadSketch) else lead
        for number, lead in enumerate(leads, start=1)
    ]


async def simulate(
    *,
    session: AsyncSession,
    rosters: RosterCache,
    rules: CompiledRules,
    leads: Sequence[LeadScored],
    at: datetime,
) -> list[SimulatedRouting]:
    """Route the leads in order at `at`, as the router would now, and store nothing.

    The roster is the current one with its stored loads; the rotations start from their stored
    standings; each decision counts in memory, so caps and rotations move through the batch.
    """
    roster = await rosters.load(session, at=at)
    chooser = await stored_rotations(session=session)
    # Routing is CPU work (evaluating, explaining): off the event loop, in a loop of its own thread.
    return await asyncio.to_thread(asyncio.run, _simulate(rules, leads, roster, chooser, at))


async def _simulate(
    rules: CompiledRules, leads: Sequence[LeadScored], roster: Roster, chooser: MemoryChooser, at: datetime
) -> list[SimulatedRouting]:
    routed = []
    for scored in leads:
        routing = await _route(rules, scored, roster, chooser, at)
        routed.append(
            SimulatedRouting(
                lead_id=scored.lead_id,
                outcome=_outcome(routing).value,
                rep_id=routing.rep_id,
                team_id=routing.team_id,
                rule=routing.decision.rule,
                explanation=routing.as_dict(),
            )
        )
    return routed


async def _route(
    rules: CompiledRules, scored: LeadScored, roster: Roster, chooser: MemoryChooser, at: datetime
) -> Routing:
    facts = facts_of(scored)
    return await route(decision=rules.evaluate(facts), facts=facts, roster=roster, chooser=chooser, at=at)


def _outcome(routing: Routing) -> Outcome:
    # A checked ruleset ends every chain in a queue or nurture, which always take the lead.
    assert routing.outcome is not None, "only a reassignment runs out"
    return routing.outcome


_Placed = tuple[str, str | None, str | None, str | None]
"""Outcome, rep id, team id, rule: plain tuples, as 10,000 leads are counted twice each."""
BEFORE, AFTER = 0, 1


@dataclass
class _Tally:
    """Counts over the leads replayed so far: [before, after] per outcome, team and rep."""

    leads: int = 0
    not_routed_before: int = 0
    teams: dict[str, list[int]] = field(default_factory=dict)
    reps: dict[str, list[int]] = field(default_factory=dict)
    outcomes: dict[str, list[int]] = field(default_factory=lambda: {outcome.value: [0, 0] for outcome in Outcome})
    changed: int = 0
    changed_leads: list[ChangedLead] = field(default_factory=list)

    def count(self, placed: _Placed, side: int) -> None:
        """One lead placed BEFORE or AFTER."""
        outcome, rep_id, team_id, _ = placed
        self.outcomes.setdefault(outcome, [0, 0])[side] += 1
        if team_id is not None:
            self.teams.setdefault(team_id, [0, 0])[side] += 1
        if rep_id is not None:
            self.reps.setdefault(rep_id, [0, 0])[side] += 1

    def add(self, lead_id: str, before: _Placed | None, after: _Placed) -> None:
        """One lead replayed: its first assignment (if any) and where the version sends it."""
        self.leads += 1
        self.count(after, AFTER)
        if before is None:
            self.not_routed_before += 1
            return
        self.count(before, BEFORE)
        if before[:3] != after[:3]:
            self.changed += 1
            if len(self.changed_leads) < CHANGED_SHOWN:
                self.changed_leads.append(ChangedLead(lead_id=lead_id, before=_placement(before),
                                                      after=_placement(after)))  # fmt: skip


def _placement(placed: _Placed) -> Placement:
    outcome, rep_id, team_id, rule = placed
    return Placement(outcome=outcome, rep_id=rep_id, team_id=team_id, rule=rule)


async def replay(
    *, session: AsyncSession, rulesets: Rulesets, rosters: RosterCache, version: int, days: int, now: datetime
) -> Replay:
    """Route the leads scored in the last `days` days again under `version`, each at its scored_at; store nothing.

    The roster is today's reps and teams with loads starting empty; the rotations start fresh. Each
    lead is compared with its actual first assignment.
    """
    try:
        rules = await rulesets.version(session, version)
    except LookupError:
        raise _unknown_version(version, field=None) from None
    roster = replace(await rosters.load(session, at=now), daily={})
    chooser = MemoryChooser()
    since = now - timedelta(days=days)
    tally = _Tally()
    query = (
        select(col(RoutedLead.lead_id), col(RoutedLead.scored_at), cast(col(RoutedLead.scored), Text))
        .where(col(RoutedLead.scored_at) >= since)
        .order_by(col(RoutedLead.scored_at), col(RoutedLead.lead_id))
    )
    routing: asyncio.Future[None] | None = None
    connection = await session.connection()  # Core rows: no ORM identity map for 100,000 leads
    rows = await connection.stream(query)
    try:
        async for chunk in rows.partitions(CHUNK):
            # The first assignments per chunk, by the (lead, sequence) key: a join in the streamed query
            # was planned as a nested loop over every assignment when statistics lagged a burst.
            firsts = await _first_assignments(connection, lead_ids=[row[0] for row in chunk])
            if routing is not None:
                await routing
            # Routing is CPU work: off the event loop (in a loop of its own thread) while the next chunk is read.
            work = _replay_chunk(tally, list(chunk), firsts, rules, roster, chooser)
            routing = asyncio.ensure_future(asyncio.to_thread(asyncio.run, work))
    finally:
        await rows.close()
        if routing is not None:
            await routing  # also when reading failed: the thread's outcome is never left unclaimed
    return Replay(
        version=version,
        days=days,
        since=since,
        leads=tally.leads,
        not_routed_before=tally.not_routed_before,
        per_team=[TeamShift(team_id=key, before=b, after=a) for key, (b, a) in sorted(tally.teams.items())],
        per_rep=[RepShift(rep_id=key, before=b, after=a) for key, (b, a) in sorted(tally.reps.items())],
        per_outcome={key: Shift(before=b, after=a) for key, (b, a) in tally.outcomes.items()},
        changed=tally.changed,
        changed_leads=tally.changed_leads,
    )


async def _first_assignments(connection: AsyncConnection, *, lead_ids: Sequence[str]) -> dict[str, _Placed]:
    query = sqlalchemy.select(  # five columns: more than sqlmodel's select types
        col(Assignment.lead_id), col(Assignment.outcome), col(Assignment.rep_id), col(Assignment.team_id),
        col(Assignment.rule_path),
    ).where(col(Assignment.lead_id).in_(lead_ids), col(Assignment.sequence) == 1)  # fmt: skip
    return {
        lead_id: (outcome, rep_id, team_id, rule_path[-1] if rule_path else None)
        for lead_id, outcome, rep_id, team_id, rule_path in (await connection.execute(query)).all()
    }


async def _replay_chunk(
    tally: _Tally,
    rows: Sequence[Any],
    firsts: dict[str, _Placed],
    rules: CompiledRules,
    roster: Roster,
    chooser: MemoryChooser,
) -> None:
    for lead_id, scored_at, scored_json in rows:
        routing = await _route(rules, LeadScored.model_validate_json(scored_json), roster, chooser, scored_at)
        after = (_outcome(routing).value, routing.rep_id, routing.team_id, routing.decision.rule)
        tally.add(lead_id, firsts.get(lead_id), after)
