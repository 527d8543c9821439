"""Assigning leads: the decision recorded with its explanation, safe when replicas race; a lead's history."""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import uuid4

from sqlalchemy import bindparam
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.db import per_dialect
from leadrelay.events import (
    AssignmentTrigger,
    EventData,
    LeadAssigned,
    LeadNurtured,
    LeadQueued,
    LeadScored,
    utcnow,
)
from router.assignments.models import Assignment, Outcome, RoutedLead
from router.assignments.roster import count_given, count_many
from router.assignments.routing import SHOWN, Chooser, Roster, Routing, route
from router.fairness.service import StoredRotations
from router.rules.engine import CompiledRules, facts_of

Observer = Callable[[str, Routing, float], None]
"""Told of each routing decision made: the lead id, the routing and the seconds it took (for metrics)."""

STORED_RULES = 100
"""How many evaluated rules a stored explanation keeps (the matched one always; the rest counted)."""


@dataclass(frozen=True)
class Decision:
    """A lead's current assignment, and whether this call made it (a new one is announced)."""

    assignment: Assignment
    new: bool


async def remember(*, session: AsyncSession, leads: Sequence[LeadScored]) -> None:
    """Keep each lead's latest lead.scored: reassignment, notifications and replay route from it."""
    newest: dict[str, LeadScored] = {}
    for scored in leads:
        kept = newest.get(scored.lead_id)
        if kept is None or scored.scored_at >= kept.scored_at:
            newest[scored.lead_id] = scored
    if not newest:
        return
    now = utcnow()
    rows = [
        {
            "lead_id": lead_id,
            "scored": scored.model_dump(mode="json"),
            "received_at": scored.lead.received_at,
            "scored_at": scored.scored_at,
            "updated_at": now,
        }
        for lead_id, scored in newest.items()
    ]
    connection = await session.connection()
    await connection.execute(_REMEMBER[connection.dialect.name], rows)


def _remember(dialect: Any) -> Any:
    statement = dialect.insert(RoutedLead)
    columns = ("scored", "received_at", "scored_at", "updated_at")
    return statement.on_conflict_do_update(
        index_elements=[col(RoutedLead.lead_id)],
        set_={name: statement.excluded[name] for name in columns},
        where=col(RoutedLead.scored_at) <= statement.excluded.scored_at,
    )


# Built once and run with the rows as parameters: one built with the rows inline is compiled anew per batch.
_REMEMBER = per_dialect(_remember)


async def get_routed(*, session: AsyncSession, lead_id: str) -> LeadScored | None:
    """The latest lead.scored the router saw for a lead."""
    row = await session.get(RoutedLead, lead_id, populate_existing=True)
    return None if row is None else LeadScored.model_validate(row.scored)


async def current_of(*, session: AsyncSession, lead_ids: Sequence[str]) -> dict[str, Assignment]:
    """Each lead's current assignment (its highest sequence), for the leads that have one."""
    current: dict[str, Assignment] = {}
    for assignment in (await session.exec(_CURRENT, params={"ids": list(lead_ids)})).all():
        current[assignment.lead_id] = assignment
    return current


# Built once with the ids as a parameter, as every batch of scored leads reads it.
_CURRENT = (
    select(Assignment)
    .where(col(Assignment.lead_id).in_(bindparam("ids", expanding=True)))
    .order_by(col(Assignment.sequence))
    .execution_options(populate_existing=True)
)


async def get_current(*, session: AsyncSession, lead_id: str) -> Assignment | None:
    """A lead's current assignment, if any."""
    return (await current_of(session=session, lead_ids=[lead_id])).get(lead_id)


async def get_history(*, session: AsyncSession, lead_id: str) -> list[Assignment]:
    """Every assignment of a lead, first to current."""
    query = select(Assignment).where(Assignment.lead_id == lead_id).order_by(col(Assignment.sequence))
    return list((await session.exec(query)).all())


def _bounded_path(path: list[str]) -> list[str]:
    return path if len(path) <= SHOWN else [*path[: SHOWN - 1], path[-1]]


async def record(
    *,
    session: AsyncSession,
    lead_id: str,
    decide: "Decide",
    sequence: int,
    trigger: AssignmentTrigger = AssignmentTrigger.ROUTED,
    reason: str | None = None,
    previous: Assignment | None = None,
    at: datetime,
) -> Assignment | None:
    """Make and store one decision in a savepoint; None, with nothing kept (credits included), if another won.

    `decide` routes with the chooser it is given: its picks, the assignment and the rep's count are
    one savepoint, so a replica that loses the race on (lead, sequence) keeps none of them.
    """
    try:
        async with session.begin_nested():
            rotations = StoredRotations(session)
            routing = await decide(rotations)
            await rotations.save()
            assignment = assignment_of(routing, lead_id=lead_id, sequence=sequence, trigger=trigger, reason=reason,
                                       previous=previous, at=at)  # fmt: skip
            session.add(assignment)
            await session.flush()
            if assignment.rep_id is not None:
                await count_given(session, rep_id=assignment.rep_id, day=decide.roster.local_day(assignment.rep_id, at))
    except IntegrityError:
        return None
    return assignment


class Decide:
    """One lead's routing under a ruleset over a roster, run by `record` with the database's chooser."""

    def __init__(self, *, rules: CompiledRules, scored: LeadScored, roster: Roster, at: datetime,
                 exclude: frozenset[str] = frozenset(), reassigning: bool = False,
                 observe: Observer | None = None) -> None:  # fmt: skip
        self.rules, self.scored, self.roster, self.at = rules, scored, roster, at
        self.exclude, self.reassigning, self.observe = exclude, reassigning, observe

    async def __call__(self, chooser: Chooser) -> Routing:
        """The routing decision."""
        started = time.perf_counter()
        facts = facts_of(self.scored)
        routing = await route(decision=self.rules.evaluate(facts), facts=facts, roster=self.roster, chooser=chooser,
                              at=self.at, exclude=self.exclude, reassigning=self.reassigning)  # fmt: skip
        if self.observe is not None:
            self.observe(self.scored.lead_id, routing, time.perf_counter() - started)
        return routing


def assignment_of(
    routing: Routing,
    *,
    lead_id: str,
    sequence: int,
    trigger: AssignmentTrigger,
    reason: str | None,
    previous: Assignment | None,
    at: datetime,
) -> Assignment:
    """The row recording a routing decision (`routing.outcome` must be set)."""
    assert routing.outcome is not None, "a routing that ran out is the caller's to resolve"
    return Assignment(
        # Given, not left to the field's default factory: on every construction pydantic inspects a
        # factory's signature, a tenth of the cost of building the row.
        id=str(uuid4()),
        lead_id=lead_id,
        sequence=sequence,
        outcome=routing.outcome,
        rep_id=routing.rep_id,
        team_id=routing.team_id,
        rule_path=_bounded_path(routing.decision.rule_path),
        candidates=routing.candidates[:SHOWN],
        routing_version=routing.decision.version,
        trigger=trigger,
        reason=reason if reason is not None else routing.nurture_reason,
        previous_assignment_id=None if previous is None else previous.id,
        explanation=routing.as_dict(limit=STORED_RULES),
        assigned_at=at,
    )


async def assign_many(
    *,
    session: AsyncSession,
    leads: Sequence[LeadScored],
    rules: CompiledRules,
    roster: Roster,
    at: datetime | None = None,
    observe: Observer | None = None,
) -> list[Decision]:
    """The leads' current assignments, in the order given: existing ones read at once, the others decided now.

    If another replica assigned one of these leads meanwhile, its assignment stands and this one's
    picks are undone. `observe` is told of every decision made, kept or not.
    """
    at = at or utcnow()
    wanted = list(dict.fromkeys(scored.lead_id for scored in leads))
    latest = {scored.lead_id: scored for scored in leads}
    current = await current_of(session=session, lead_ids=wanted)
    decided: dict[str, Decision] = {lead_id: Decision(assignment, new=False) for lead_id, assignment in current.items()}
    undecided = [lead_id for lead_id in wanted if lead_id not in decided]
    if undecided:
        made = await _decide_together(session=session, lead_ids=undecided, latest=latest, rules=rules, roster=roster,
                                      at=at, observe=observe)  # fmt: skip
        if made is None:  # another replica assigned some of them meanwhile: one by one, theirs standing
            made = {}
            for lead_id in undecided:
                decide = Decide(rules=rules, scored=latest[lead_id], roster=roster, at=at, observe=observe)
                assignment = await record(session=session, lead_id=lead_id, decide=decide, sequence=1, at=at)
                if assignment is None:
                    winner = await get_current(session=session, lead_id=lead_id)
                    assert winner is not None
                    made[lead_id] = Decision(winner, new=False)
                else:
                    made[lead_id] = Decision(assignment, new=True)
        decided.update(made)
    return [decided[scored.lead_id] for scored in leads]


async def _decide_together(
    *,
    session: AsyncSession,
    lead_ids: Sequence[str],
    latest: dict[str, LeadScored],
    rules: CompiledRules,
    roster: Roster,
    at: datetime,
    observe: Observer | None,
) -> dict[str, Decision] | None:
    """Decide a run of new leads in one savepoint: each pool locked once, one insert, one count; None if taken.

    A lead another replica assigned meanwhile fails the insert: the savepoint rolls back every pick
    and count of the run (the roster's in-memory counts excepted, which only the run reads).
    """
    try:
        async with session.begin_nested():
            chooser = StoredRotations(session)
            made: dict[str, Decision] = {}
            given: dict[tuple[str, date], int] = {}
            for lead_id in lead_ids:
                routing = await Decide(rules=rules, scored=latest[lead_id], roster=roster, at=at, observe=observe)(
                    chooser
                )
                assignment = assignment_of(routing, lead_id=lead_id, sequence=1, trigger=AssignmentTrigger.ROUTED,
                                           reason=None, previous=None, at=at)  # fmt: skip
                made[lead_id] = Decision(assignment, new=True)
                if assignment.rep_id is not None:
                    day = roster.local_day(assignment.rep_id, at)
                    given[(assignment.rep_id, day)] = given.get((assignment.rep_id, day), 0) + 1
            await chooser.save()
            session.add_all([decision.assignment for decision in made.values()])
            await session.flush()
            await count_many(session, given=given)
    except IntegrityError:
        return None
    return made


def announcement(assignment: Assignment, scored: LeadScored | None, *, previous: Assignment | None = None) -> EventData:
    """The event announcing an assignment: lead.assigned, lead.queued or lead.nurtured, with a bounded explanation."""
    explanation = _bounded_explanation(assignment.explanation)
    context = {
        "grade": None if scored is None else scored.grade,
        "source": None if scored is None else scored.lead.source,
    }
    if assignment.outcome == Outcome.QUEUED:
        assert assignment.team_id is not None
        return LeadQueued(
            lead_id=assignment.lead_id,
            assignment_id=assignment.id,
            team_id=assignment.team_id,
            rule_path=assignment.rule_path,
            routing_version=assignment.routing_version,
            queued_at=assignment.assigned_at,
            sequence=assignment.sequence,
            trigger=AssignmentTrigger(assignment.trigger),
            previous_assignment_id=assignment.previous_assignment_id,
            reason=assignment.reason,
            explanation=explanation,
            **context,
        )
    if assignment.outcome == Outcome.NURTURED:
        return LeadNurtured(
            lead_id=assignment.lead_id,
            assignment_id=assignment.id,
            rule_path=assignment.rule_path,
            routing_version=assignment.routing_version,
            nurtured_at=assignment.assigned_at,
            reason=assignment.reason,
            explanation=explanation,
            **context,
        )
    assert assignment.rep_id is not None
    return LeadAssigned(
        lead_id=assignment.lead_id,
        assignment_id=assignment.id,
        rep_id=assignment.rep_id,
        team_id=assignment.team_id,
        rule_path=assignment.rule_path,
        candidates=assignment.candidates,
        routing_version=assignment.routing_version,
        assigned_at=assignment.assigned_at,
        sequence=assignment.sequence,
        trigger=AssignmentTrigger(assignment.trigger),
        previous_assignment_id=assignment.previous_assignment_id,
        previous_rep_id=None if previous is None else previous.rep_id,
        reason=assignment.reason,
        mql=None if scored is None else scored.mql,
        explanation=explanation,
        **context,
    )


def _bounded_explanation(explanation: dict[str, Any]) -> dict[str, Any]:
    """The stored explanation cut to SHOWN rules, and SHOWN reps a step, for an event."""
    bounded = dict(explanation)
    evaluated = list(explanation.get("evaluated", []))
    if len(evaluated) > SHOWN:
        bounded["evaluated"] = [*evaluated[: SHOWN - 1], evaluated[-1]]
        bounded["evaluated_omitted"] = explanation.get("evaluated_omitted", 0) + len(evaluated) - SHOWN
    bounded["steps"] = [_bounded_step(dict(step)) for step in explanation.get("steps", [])]
    return bounded


def _bounded_step(step: dict[str, Any]) -> dict[str, Any]:
    skipped = step.get("skipped", [])
    if len(skipped) > SHOWN:
        step["skipped"] = skipped[:SHOWN]
        step["skipped_omitted"] = step.get("skipped_omitted", 0) + len(skipped) - SHOWN
    pick = step.get("pick")
    if pick and len(pick["candidates"]) > SHOWN:
        chosen = [candidate for candidate in pick["candidates"] if candidate["chosen"]]
        others = [candidate for candidate in pick["candidates"] if not candidate["chosen"]][: SHOWN - 1]
        omitted = pick.get("candidates_omitted", 0) + len(pick["candidates"]) - SHOWN
        step["pick"] = {**pick, "candidates": others + chosen, "candidates_omitted": omitted}
    return step
