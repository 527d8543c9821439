"""Reassigning a lead: the next available rep who has not held it, else the team's manager, else the team's queue.

The rule, for a lead whose current assignment is in team T:

1. Route the lead's latest lead.scored again under the active ruleset, every rep who has held
   the lead excluded and queue and nurture steps passed over (`routing.route(reassigning=True)`).
2. Nobody left: T's manager, unless the manager has held the lead (or T has none, or the
   manager is no stored rep). The manager is not checked for availability: the last resort.
3. Otherwise T's queue, for a rep of T to pick up by hand. A lead already in T's queue, or in
   no team, stays where it is: nothing new is recorded (`NobodyLeft`).

By hand, a named rep takes the lead outright (it must exist and be active; availability and
caps are the caller's judgement). Each reassignment is the lead's sequence + 1, so of two made
at once only one is stored.
"""

import dataclasses
import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay import audit, outbox
from leadrelay.apikeys import ApiKey
from leadrelay.db import after_commit
from leadrelay.events import AssignmentTrigger, EscalationStep, SlaBreached, new_event, utcnow
from router.assignments import service as assignments
from router.assignments.models import Assignment, Outcome
from router.assignments.roster import count_given
from router.assignments.routing import Chooser, Roster, Routing, Skip, Skipped, Step, StepOutcome
from router.assignments.service import Decide
from router.context import RouterContext
from router.notifications import service as notifications

logger = logging.getLogger(__name__)

SOURCE = "leadrelay/router"


class Escalated(StrEnum):
    """The step a reassignment adds when routing found nobody left: its `action.type` and `outcome`."""

    MANAGER = "manager"
    """To the manager of the current assignment's team."""
    TEAM_QUEUE = "team_queue"
    """To that team's queue (no manager, or the manager has held the lead)."""


class NotRouted(Exception):
    """The lead has no assignment, or no stored lead.scored, to reassign from."""


class NobodyLeft(Exception):
    """Nobody can take the lead: no rep left, and no team queue it is not already in."""


class RepRefused(Exception):
    """The named rep cannot take the lead: unknown or inactive."""


class AlreadyHolds(Exception):
    """The named rep holds the lead now."""


@dataclass(frozen=True)
class EscalationTaken(Step):
    """The manager or team-queue step after a routing that ran out (`outcome` CHOSEN or QUEUED)."""

    escalated: Escalated = Escalated.MANAGER
    team_id: str | None = None

    def as_dict(self, *, limit: int | None = None) -> dict[str, Any]:
        """JSON-ready: the team whose manager or queue took the lead, and the manager passed over (one at most)."""
        return {
            "step": self.index,
            "action": {"type": self.escalated.value, "team": self.team_id},
            "outcome": self.escalated.value,
            "rep_id": self.rep_id,
            "skipped": [entry.as_dict() for entry in self.skipped],
            "skipped_omitted": 0,
        }


class Reassigning(Decide):
    """A reassignment's routing: the rules without the reps who held the lead, then the manager, then the queue."""

    def __init__(self, *, current: Assignment, held: frozenset[str], **decide: Any) -> None:
        super().__init__(exclude=held, reassigning=True, **decide)
        self.current = current

    async def __call__(self, chooser: Chooser) -> Routing:
        """The routing decision, escalated when it ran out (raises NobodyLeft)."""
        routing = await super().__call__(chooser)
        if routing.outcome is not None:
            return routing
        return escalate(routing, current=self.current, held=self.exclude, roster=self.roster, at=self.at)


def escalate(routing: Routing, *, current: Assignment, held: frozenset[str], roster: Roster, at: datetime) -> Routing:
    """A routing that ran out, sent on to the current team's manager, else its queue; raises NobodyLeft."""
    team_id = current.team_id
    if team_id is None:
        raise NobodyLeft("nobody is left to take the lead, and it is in no team whose manager or queue could")
    manager = roster.managers.get(team_id)
    passed_over: Skip | None = None
    if manager is not None and manager not in roster.reps:
        passed_over = Skip.UNKNOWN_REP
    elif manager is not None and manager in held:
        passed_over = Skip.HELD_BEFORE
    index, action = len(routing.steps), routing.decision.action  # a Step needs an action; as_dict says its own
    if manager is not None and passed_over is None:
        roster.given(manager, at)
        step = EscalationTaken(index, action, StepOutcome.CHOSEN, rep_id=manager, team_id=team_id)
        return dataclasses.replace(
            routing, outcome=Outcome.ASSIGNED, steps=(*routing.steps, step), rep_id=manager, team_id=team_id
        )
    if current.outcome == Outcome.QUEUED and current.team_id == team_id:
        raise NobodyLeft(f"nobody is left to take the lead, and it is in team {team_id}'s queue already")
    skipped = () if manager is None or passed_over is None else (Skipped(manager, passed_over),)
    step = EscalationTaken(index, action, StepOutcome.QUEUED, skipped, escalated=Escalated.TEAM_QUEUE, team_id=team_id)
    return dataclasses.replace(routing, outcome=Outcome.QUEUED, steps=(*routing.steps, step), team_id=team_id)


@dataclass(frozen=True)
class Reassigned:
    """A new assignment of a lead and the one it replaced."""

    assignment: Assignment
    previous: Assignment


async def reassign(
    *,
    session: AsyncSession,
    context: RouterContext,
    lead_id: str,
    trigger: AssignmentTrigger,
    reason: str,
    rep_id: str | None = None,
    expected: str | None = None,
    at: datetime | None = None,
) -> Reassigned | None:
    """Reassign the lead, announce it and enqueue its notifications, in the caller's transaction.

    None, with nothing kept, when the lead's current assignment is not `expected` (when given) or
    another reassignment of the lead was stored meanwhile. Raises NotRouted, NobodyLeft,
    RepRefused, AlreadyHolds.
    """
    at = at or utcnow()
    history = await assignments.get_history(session=session, lead_id=lead_id)
    if not history:
        raise NotRouted(lead_id)
    current = history[-1]
    if expected is not None and current.id != expected:
        return None
    scored = await assignments.get_routed(session=session, lead_id=lead_id)
    roster = await context.rosters.load(session, at=at)
    if rep_id is not None:
        assignment = await _record_named(session, current=current, rep_id=rep_id, roster=roster, reason=reason, at=at)
    else:
        if scored is None:
            raise NotRouted(lead_id)
        held = frozenset(row.rep_id for row in history if row.rep_id is not None)
        decide = Reassigning(current=current, held=held, rules=await context.rulesets.active(session), scored=scored,
                             roster=roster, at=at)  # fmt: skip
        assignment = await assignments.record(session=session, lead_id=lead_id, decide=decide,
                                              sequence=current.sequence + 1, trigger=trigger, reason=reason,
                                              previous=current, at=at)  # fmt: skip
    if assignment is None:
        return None
    outbox.add(session, new_event(assignments.announcement(assignment, scored, previous=current), source=SOURCE))
    await notifications.enqueue(session=session, assigned=[(assignment, scored)], context=context)
    recorded = assignment
    after_commit(session, lambda: context.metrics.reassigned(recorded))
    return Reassigned(assignment=assignment, previous=current)


async def _record_named(
    session: AsyncSession, *, current: Assignment, rep_id: str, roster: Roster, reason: str, at: datetime
) -> Assignment | None:
    """The named rep's assignment, stored in a savepoint with its count; None if another was stored first."""
    rep = roster.reps.get(rep_id)
    if rep is None:
        raise RepRefused(f"no rep with id {rep_id}")
    if not rep.active:
        raise RepRefused(f"rep {rep_id} is inactive")
    if current.rep_id == rep_id:
        raise AlreadyHolds(f"rep {rep_id} holds lead {current.lead_id} already")
    team_id = current.team_id if current.team_id in rep.teams else (rep.teams[0] if rep.teams else None)
    explanation = {
        "version": current.routing_version,
        "outcome": Outcome.ASSIGNED.value,
        "rep_id": rep_id,
        "team_id": team_id,
        "steps": [{"step": 0, "action": {"type": "named", "rep": rep_id}, "outcome": StepOutcome.CHOSEN.value,
                   "rep_id": rep_id, "skipped": [], "skipped_omitted": 0}],
    }  # fmt: skip
    assignment = Assignment(
        lead_id=current.lead_id,
        sequence=current.sequence + 1,
        outcome=Outcome.ASSIGNED,
        rep_id=rep_id,
        team_id=team_id,
        rule_path=[],
        candidates=[rep_id],
        routing_version=current.routing_version,
        trigger=AssignmentTrigger.MANUAL,
        reason=reason,
        previous_assignment_id=current.id,
        explanation=explanation,
        assigned_at=at,
    )
    try:
        async with session.begin_nested():
            session.add(assignment)
            await session.flush()
            await count_given(session, rep_id=rep_id, day=roster.local_day(rep_id, at))
    except IntegrityError:
        return None
    return assignment


async def on_breach(*, session: AsyncSession, context: RouterContext, breach: SlaBreached) -> Reassigned | None:
    """Reassign the lead of a breach whose escalation says reassign, if the breached assignment is still current."""
    if EscalationStep.REASSIGN not in breach.escalation:
        return None
    try:
        reassigned = await reassign(session=session, context=context, lead_id=breach.lead_id,
                                    trigger=AssignmentTrigger.SLA_BREACH, reason=f"{breach.obligation} breached",
                                    expected=breach.assignment_id)  # fmt: skip
    except (NotRouted, NobodyLeft) as stuck:
        # Nothing to move it to: the breach stands, and the escalation's other steps still apply.
        logger.warning("breached lead not reassigned", extra={"lead_id": breach.lead_id, "why": str(stuck)})
        return None
    if reassigned is None:
        logger.info("breach of a replaced assignment ignored", extra={"lead_id": breach.lead_id})
    return reassigned


def audited(session: AsyncSession, *, actor: ApiKey, reassigned: Reassigned) -> None:
    """Record a reassignment by hand in the audit log (same transaction)."""
    assignment = reassigned.assignment
    audit.record(
        session,
        actor=actor,
        action="assignment.reassigned",
        target=assignment.lead_id,
        detail={
            "assignment_id": assignment.id,
            "sequence": assignment.sequence,
            "outcome": assignment.outcome,
            "rep_id": assignment.rep_id,
            "team_id": assignment.team_id,
            "previous_assignment_id": reassigned.previous.id,
            "previous_rep_id": reassigned.previous.rep_id,
            "reason": assignment.reason,
        },
    )
