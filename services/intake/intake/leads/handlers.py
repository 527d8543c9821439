"""Events other services publish, folded into the lead read model."""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from pydantic import TypeAdapter
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from intake.config import IntakeSettings
from intake.leads import service
from intake.leads.models import Lead, RoutingOutcome
from leadrelay.consumer import Handlers
from leadrelay.events import (
    AssignmentTrigger,
    CloudEvent,
    EventData,
    LeadAssigned,
    LeadNurtured,
    LeadQueued,
    LeadScored,
    ScoreCriterion,
    SlaBreached,
    SlaCancelled,
    SlaEventData,
    SlaMet,
    SlaStarted,
    SlaWarning,
    utcnow,
)
from leadrelay.stages import LeadStage, SlaState

logger = logging.getLogger(__name__)


E = TypeVar("E", bound=EventData)
S = TypeVar("S", bound=SlaEventData)
Details = dict[str, Any]


@dataclass(slots=True)
class FoldedLead:
    """The columns of a lead the events fold into, as plain values: cheaper to load and change than an ORM Lead."""

    id: str
    stage: LeadStage
    score: int | None
    icp_version: str | None
    grade: str | None
    fit: int | None
    engagement: int | None
    mql: bool
    account_id: str | None
    owner_rep_id: str | None
    assignment_id: str | None
    assignment_sequence: int
    routing_outcome: str | None
    queue_team_id: str | None
    sla_obligations: dict[str, Any]
    sla_state: str | None
    sla_due_at: datetime | None


_FOLDED = tuple(field.name for field in fields(FoldedLead))
# Built once, the ids bound at execution: a statement built per run would be compiled and
# cache-keyed anew each time. Locked (on PostgreSQL) in id order: a rep's activity on the same
# lead at the same moment must not be overwritten by a stage read before it committed.
_LOCK_LEADS = (
    sa.select(*(Lead.__table__.c[name] for name in _FOLDED))  # type: ignore[attr-defined]
    .where(col(Lead.id).in_(sa.bindparam("ids", expanding=True)))
    .order_by(col(Lead.id))
    .with_for_update()
)
# The SET clause is the columns each row's parameters name: only those that changed, as the ORM would write.
_UPDATE_LEAD = sa.update(Lead).where(col(Lead.id) == sa.bindparam("lead_id"))


async def _fold(
    session: AsyncSession,
    events: Sequence[CloudEvent[E]],
    apply: Callable[[FoldedLead, CloudEvent[E]], Details | None],
) -> None:
    """Apply a run of events to their leads, loaded in one query, and add a timeline entry per change.

    `apply` changes the lead and returns the timeline details, or None when the event changes
    nothing (the same decision announced again after a re-drive).
    """
    connection = await session.connection()
    ids = sorted({event.subject for event in events})
    loaded = {row.id: row for row in (await connection.execute(_LOCK_LEADS, {"ids": ids})).mappings()}
    if len(loaded) < len(ids):
        logger.warning("events for leads intake does not know, ignored", extra={"count": len(ids) - len(loaded)})
    leads = {lead_id: FoldedLead(**row) for lead_id, row in loaded.items()}
    updated_at: dict[str, datetime] = {}
    entries: list[Details] = []
    for event in events:
        lead = leads.get(event.subject)
        details = apply(lead, event) if lead is not None else None
        if lead is None or details is None:
            continue
        updated_at[lead.id] = utcnow()
        entries.append(service.timeline_row(lead_id=lead.id, event=event, details=details))
    # One executemany per set of changed columns (one set in a run of same-type events, as a rule), in id order.
    updates: dict[tuple[str, ...], list[Details]] = {}
    for lead_id in sorted(updated_at):
        lead, row = leads[lead_id], loaded[lead_id]
        changed = {name: getattr(lead, name) for name in _FOLDED if getattr(lead, name) != row[name]}
        changed["updated_at"] = updated_at[lead_id]
        updates.setdefault(tuple(changed), []).append({**changed, "lead_id": lead_id})
    for rows in updates.values():
        await connection.execute(_UPDATE_LEAD, rows)
    service.add_timeline_rows(session, entries)


MAX_TIMELINE_CRITERIA = 50
"""Criteria a timeline entry keeps (those that gave the most points): a 200-criterion ICP stays readable."""
MAX_REASON_CHARS = 200


def _bounded_explanation(explanation: Sequence[ScoreCriterion]) -> tuple[list[Details], int]:
    """The criteria that weighed most, in the ICP's order, each reason cut to length; and how many were left out."""
    weightiest = sorted(range(len(explanation)), key=lambda index: -abs(explanation[index].points))
    kept = [explanation[index] for index in sorted(weightiest[:MAX_TIMELINE_CRITERIA])]
    entries = [
        {**criterion, "reason": criterion["reason"][:MAX_REASON_CHARS]}
        for criterion in _CRITERIA.dump_python(kept, mode="json")
    ]
    return entries, len(explanation) - len(entries)


# One call dumps the whole list: a model_dump per criterion costs twice as much.
_CRITERIA = TypeAdapter(list[ScoreCriterion])


def _apply_score(lead: FoldedLead, event: CloudEvent[LeadScored]) -> Details | None:
    scored = event.data
    account_id = scored.account.account_id if scored.account is not None else None
    decision = (scored.score, scored.icp_version, scored.grade, scored.fit, scored.engagement, scored.mql, account_id)
    # A re-drive or a re-score that changed nothing adds no timeline entry; any new value does.
    if decision == (lead.score, lead.icp_version, lead.grade, lead.fit, lead.engagement, lead.mql, lead.account_id):
        return None
    lead.score, lead.icp_version, lead.grade, lead.fit, lead.engagement, lead.mql, lead.account_id = decision
    service.advance_stage(lead, scored.stage)
    explanation, omitted = _bounded_explanation(scored.explanation)
    return {
        "score": scored.score,
        "stage": scored.stage,
        "icp_version": scored.icp_version,
        "grade": scored.grade,
        "fit": scored.fit,
        "engagement": scored.engagement,
        "mql": scored.mql,
        "mql_reason": scored.mql_reason,
        "became_mql": scored.became_mql,
        "disqualified": scored.disqualified,
        "trigger": scored.trigger,
        "account": scored.account.model_dump(mode="json") if scored.account is not None else None,
        "enriched_fields": scored.enriched_fields,
        "explanation": explanation,
        "explanation_omitted": omitted,
    }


NURTURED_SEQUENCE = 1
"""lead.nurtured carries no sequence: the router nurtures only on a first routing (reassigning passes over nurture)."""
MAX_TIMELINE_CANDIDATES = 50
"""Reps a timeline entry lists as considered: a team of 5,000 stays readable."""


def _supersedes(lead: FoldedLead, *, assignment_id: str, sequence: int) -> bool:
    """Whether a routing decision is newer than the one the lead shows.

    The same decision announced again (a re-drive) is not, nor an older one arriving late: it
    must not take the lead back from the rep a reassignment gave it to.
    """
    if lead.assignment_id == assignment_id:
        return False
    if sequence <= lead.assignment_sequence:
        logger.info(
            "a routing decision older than the lead's arrived late, ignored",
            extra={"lead_id": lead.id, "sequence": sequence, "current_sequence": lead.assignment_sequence},
        )
        return False
    return True


def _routed(lead: FoldedLead, *, outcome: RoutingOutcome, assignment_id: str, sequence: int) -> None:
    lead.routing_outcome, lead.assignment_id, lead.assignment_sequence = outcome, assignment_id, sequence


def _decision(data: LeadAssigned | LeadQueued | LeadNurtured, *, outcome: RoutingOutcome) -> Details:
    """What every routing entry on the timeline says: the outcome, the rule and version, and the explanation."""
    explanation = data.explanation or {}
    return {
        "outcome": outcome,
        "assignment_id": data.assignment_id,
        "rule": explanation.get("rule", data.rule_path[-1] if data.rule_path else None),
        "rule_path": data.rule_path,
        "routing_version": data.routing_version,
        "reason": data.reason,
        "grade": data.grade,
        "source": data.source,
        "explanation": data.explanation,
    }


def _apply_assignment(lead: FoldedLead, event: CloudEvent[LeadAssigned]) -> Details | None:
    assigned = event.data
    if not _supersedes(lead, assignment_id=assigned.assignment_id, sequence=assigned.sequence):
        return None
    _routed(lead, outcome=RoutingOutcome.ASSIGNED, assignment_id=assigned.assignment_id, sequence=assigned.sequence)
    lead.owner_rep_id, lead.queue_team_id = assigned.rep_id, None
    return {
        **_decision(assigned, outcome=RoutingOutcome.ASSIGNED),
        "sequence": assigned.sequence,
        "trigger": assigned.trigger,
        "rep_id": assigned.rep_id,
        "team_id": assigned.team_id,
        "previous_assignment_id": assigned.previous_assignment_id,
        "previous_rep_id": assigned.previous_rep_id,
        "mql": assigned.mql,
        "candidates": assigned.candidates[:MAX_TIMELINE_CANDIDATES],
        "candidates_omitted": max(0, len(assigned.candidates) - MAX_TIMELINE_CANDIDATES),
    }


def _apply_queue(lead: FoldedLead, event: CloudEvent[LeadQueued]) -> Details | None:
    queued = event.data
    if not _supersedes(lead, assignment_id=queued.assignment_id, sequence=queued.sequence):
        return None
    _routed(lead, outcome=RoutingOutcome.QUEUED, assignment_id=queued.assignment_id, sequence=queued.sequence)
    # Nobody owns a queued lead: the team's reps see it in their queue until one picks it up.
    lead.owner_rep_id, lead.queue_team_id = None, queued.team_id
    return {
        **_decision(queued, outcome=RoutingOutcome.QUEUED),
        "sequence": queued.sequence,
        "trigger": queued.trigger,
        "rep_id": None,
        "team_id": queued.team_id,
        "previous_assignment_id": queued.previous_assignment_id,
    }


def _apply_nurture(lead: FoldedLead, event: CloudEvent[LeadNurtured]) -> Details | None:
    nurtured = event.data
    if not _supersedes(lead, assignment_id=nurtured.assignment_id, sequence=NURTURED_SEQUENCE):
        return None
    _routed(lead, outcome=RoutingOutcome.NURTURED, assignment_id=nurtured.assignment_id, sequence=NURTURED_SEQUENCE)
    lead.owner_rep_id, lead.queue_team_id = None, None
    # A lead sales already moved on (accepted, qualified...) keeps its stage: marked nurtured, not demoted.
    stage_changed = service.nurture(lead)
    return {
        **_decision(nurtured, outcome=RoutingOutcome.NURTURED),
        "sequence": NURTURED_SEQUENCE,
        "trigger": AssignmentTrigger.ROUTED,
        "rep_id": None,
        "team_id": None,
        "stage": lead.stage,
        "stage_changed": stage_changed,
    }


# SLA: several obligations per lead (accept, first_touch, disposition...), each with its own events.

SLA_STEP = {SlaState.RUNNING: 0, SlaState.WARNING: 1, SlaState.BREACHED: 2, SlaState.MET: 2, SlaState.CANCELLED: 2}
"""How far along its life an obligation is: a late event of the same assignment never takes it back."""
SLA_URGENCY = {SlaState.BREACHED: 0, SlaState.WARNING: 1, SlaState.RUNNING: 2}
"""Open states, most urgent first: the lead's `sla_state` is its most urgent open obligation's."""


def _sla_moment(data: SlaEventData, *, sent_at: datetime) -> tuple[SlaState, datetime]:
    """The state an sla.* event puts its obligation in, and when (`sent_at`, the event's time, if it does not say)."""
    if isinstance(data, SlaStarted):
        return SlaState.RUNNING, data.started_at
    if isinstance(data, SlaWarning):
        return SlaState.WARNING, data.warned_at or sent_at
    if isinstance(data, SlaBreached):
        return SlaState.BREACHED, data.breached_at
    if isinstance(data, SlaMet):
        return SlaState.MET, data.met_at
    if isinstance(data, SlaCancelled):
        return SlaState.CANCELLED, data.cancelled_at
    raise TypeError(f"not an sla.* event: {type(data).__name__}")


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


def _when(value: str | None) -> datetime | None:
    return None if value is None else _instant(value)


def _obligation(data: SlaEventData, *, sent_at: datetime) -> Details:
    """The obligation's state as this event tells it (stored as JSON in `Lead.sla_obligations`)."""
    state, at = _sla_moment(data, sent_at=sent_at)
    started: datetime | None = data.started_at if isinstance(data, SlaStarted) else None
    if started is None and data.elapsed_seconds is not None:
        started = at - timedelta(seconds=data.elapsed_seconds)
    return {
        "state": state.value,
        "due_at": data.due_at.astimezone(UTC).isoformat(),
        "assignment_id": data.assignment_id,
        "rep_id": data.rep_id,
        "started_at": None if started is None else started.astimezone(UTC).isoformat(),
        "changed_at": at.astimezone(UTC).isoformat(),
    }


def _supersedes_obligation(known: Details | None, told: Details) -> bool:
    """Whether `told` is newer than the obligation's `known` state, so a late older event changes nothing.

    Of one assignment: further along (running, warning, then breached, met or cancelled), then
    later; in the same state, a moved deadline (a team's calendar changed) told no earlier. Of
    another assignment (the obligation restarted on a reassignment): started later, then later.
    """
    if known is None:
        return True
    at_known, at_told = _instant(known["changed_at"]), _instant(told["changed_at"])
    if known["assignment_id"] == told["assignment_id"]:
        if known["state"] == told["state"] and known["due_at"] != told["due_at"] and at_told >= at_known:
            return True
        return (SLA_STEP[SlaState(told["state"])], at_told) > (SLA_STEP[SlaState(known["state"])], at_known)
    started_known, started_told = _when(known["started_at"]), _when(told["started_at"])
    if started_known is not None and started_told is not None and started_known != started_told:
        return started_told > started_known
    return at_told > at_known


def sla_summary(obligations: dict[str, Details]) -> tuple[SlaState | None, datetime | None]:
    """The lead's `sla_state` and `sla_due_at`: its most urgent open obligation, else its latest closed one."""
    open_ones = [entry for entry in obligations.values() if SlaState(entry["state"]) in SLA_URGENCY]
    if open_ones:
        chosen = min(open_ones, key=lambda entry: (SLA_URGENCY[SlaState(entry["state"])], _instant(entry["due_at"])))
    elif obligations:
        chosen = max(obligations.values(), key=lambda entry: (_instant(entry["changed_at"]), entry["state"]))
    else:
        return None, None
    return SlaState(chosen["state"]), _instant(chosen["due_at"])


def _sla_details(data: SlaEventData, told: Details, *, current: bool) -> Details:
    details: Details = {
        "obligation": data.obligation,
        "state": told["state"],
        "due_at": told["due_at"],
        "assignment_id": data.assignment_id,
        "rep_id": data.rep_id,
        "current": current,
    }
    if isinstance(data, SlaWarning):
        details["remaining_seconds"] = data.remaining_seconds
    elif isinstance(data, SlaBreached):
        details["escalation"] = [step.value for step in data.escalation]
    elif isinstance(data, SlaMet):
        details["activity"] = data.activity
    elif isinstance(data, SlaCancelled):
        details["reason"] = data.reason
    return details


def _apply_sla(lead: FoldedLead, event: CloudEvent[S]) -> Details | None:
    """Keep the obligation's newest state and the lead's summary; a late older event only joins the timeline."""
    obligation = event.data.obligation
    told = _obligation(event.data, sent_at=event.time)
    known = lead.sla_obligations.get(obligation)
    same_assignment = known is not None and known["assignment_id"] == told["assignment_id"]
    seen: list[str] = known.get("seen", []) if known is not None and same_assignment else []
    if not _supersedes_obligation(known, told):
        if told["state"] in seen:
            return None  # told again (a re-drive): nothing new for the timeline either
        return _sla_details(event.data, told, current=False)
    # A new dict, so the JSON column is written.
    seen = seen if told["state"] in seen else [*seen, told["state"]]
    lead.sla_obligations = {**lead.sla_obligations, obligation: {**told, "seen": seen}}
    state, due_at = sla_summary(lead.sla_obligations)
    lead.sla_state, lead.sla_due_at = (None if state is None else state.value), due_at
    return _sla_details(event.data, told, current=True)


async def on_lead_scored(events: Sequence[CloudEvent[LeadScored]], session: AsyncSession) -> None:
    """Record score, ICP version and stage."""
    await _fold(session, events, _apply_score)


async def on_lead_assigned(events: Sequence[CloudEvent[LeadAssigned]], session: AsyncSession) -> None:
    """Record the owner (a reassignment replaces it) and the decision's explanation."""
    await _fold(session, events, _apply_assignment)


async def on_lead_queued(events: Sequence[CloudEvent[LeadQueued]], session: AsyncSession) -> None:
    """Record the team queue the lead waits in, with no owner."""
    await _fold(session, events, _apply_queue)


async def on_lead_nurtured(events: Sequence[CloudEvent[LeadNurtured]], session: AsyncSession) -> None:
    """Record the lead's return to marketing: no owner, stage nurture where the lifecycle allows it."""
    await _fold(session, events, _apply_nurture)


async def on_sla_started(events: Sequence[CloudEvent[SlaStarted]], session: AsyncSession) -> None:
    """Record an obligation's deadline, running."""
    await _fold(session, events, _apply_sla)


async def on_sla_warning(events: Sequence[CloudEvent[SlaWarning]], session: AsyncSession) -> None:
    """Mark an obligation as close to its deadline."""
    await _fold(session, events, _apply_sla)


async def on_sla_breached(events: Sequence[CloudEvent[SlaBreached]], session: AsyncSession) -> None:
    """Mark an obligation as breached."""
    await _fold(session, events, _apply_sla)


async def on_sla_met(events: Sequence[CloudEvent[SlaMet]], session: AsyncSession) -> None:
    """Mark an obligation as met."""
    await _fold(session, events, _apply_sla)


async def on_sla_cancelled(events: Sequence[CloudEvent[SlaCancelled]], session: AsyncSession) -> None:
    """Mark an obligation as closed unmet and unbreached (the lead left its stages, or was reassigned)."""
    await _fold(session, events, _apply_sla)


def handlers(settings: IntakeSettings) -> Handlers:
    """Message type to handler; the hot path (scored, routed, started) takes whole runs at once."""
    del settings  # the read model needs no settings; every service declares its handlers the same way
    return (
        Handlers()
        .on_batch(LeadScored, on_lead_scored)
        .on_batch(LeadAssigned, on_lead_assigned)
        .on_batch(LeadQueued, on_lead_queued)
        .on_batch(LeadNurtured, on_lead_nurtured)
        .on_batch(SlaStarted, on_sla_started)
        .on_batch(SlaWarning, on_sla_warning)
        .on_batch(SlaBreached, on_sla_breached)
        .on_batch(SlaMet, on_sla_met)
        .on_batch(SlaCancelled, on_sla_cancelled)
    )
