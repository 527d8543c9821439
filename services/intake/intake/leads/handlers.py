"""Events other services publish, folded into the lead read model."""

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlmodel import col, select
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
    SlaMet,
    SlaStarted,
    SlaWarning,
    utcnow,
)
from leadrelay.stages import SlaState

logger = logging.getLogger(__name__)


E = TypeVar("E", bound=EventData)
Details = dict[str, Any]


async def _fold(
    session: AsyncSession, events: Sequence[CloudEvent[E]], apply: Callable[[Lead, CloudEvent[E]], Details | None]
) -> None:
    """Apply a run of events to their leads, loaded in one query, and add a timeline entry per change.

    `apply` changes the lead and returns the timeline details, or None when the event changes
    nothing (the same decision announced again after a re-drive).
    """
    ids = sorted({event.subject for event in events})
    # Locked (on PostgreSQL) in id order: a rep's activity on the same lead at the same moment
    # must not be overwritten by a stage read before it committed.
    query = select(Lead).where(col(Lead.id).in_(ids)).order_by(col(Lead.id)).with_for_update()
    leads = {lead.id: lead for lead in (await session.exec(query.execution_options(populate_existing=True))).all()}
    if len(leads) < len(ids):
        logger.warning("events for leads intake does not know, ignored", extra={"count": len(ids) - len(leads)})
    for event in events:
        lead = leads.get(event.subject)
        details = apply(lead, event) if lead is not None else None
        if lead is None or details is None:
            continue
        lead.updated_at = utcnow()
        session.add(lead)
        service.add_timeline(session, lead_id=lead.id, event=event, details=details)


MAX_TIMELINE_CRITERIA = 50
"""Criteria a timeline entry keeps (those that gave the most points): a 200-criterion ICP stays readable."""
MAX_REASON_CHARS = 200


def _bounded_explanation(explanation: Sequence[ScoreCriterion]) -> tuple[list[Details], int]:
    """The criteria that weighed most, in the ICP's order, each reason cut to length; and how many were left out."""
    weightiest = sorted(range(len(explanation)), key=lambda index: -abs(explanation[index].points))
    kept = set(weightiest[:MAX_TIMELINE_CRITERIA])
    entries = [
        {**criterion.model_dump(mode="json"), "reason": criterion.reason[:MAX_REASON_CHARS]}
        for index, criterion in enumerate(explanation)
        if index in kept
    ]
    return entries, len(explanation) - len(entries)


def _apply_score(lead: Lead, event: CloudEvent[LeadScored]) -> Details | None:
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


def _supersedes(lead: Lead, *, assignment_id: str, sequence: int) -> bool:
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


def _routed(lead: Lead, *, outcome: RoutingOutcome, assignment_id: str, sequence: int) -> None:
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


def _apply_assignment(lead: Lead, event: CloudEvent[LeadAssigned]) -> Details | None:
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


def _apply_queue(lead: Lead, event: CloudEvent[LeadQueued]) -> Details | None:
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


def _apply_nurture(lead: Lead, event: CloudEvent[LeadNurtured]) -> Details | None:
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


def _apply_deadline(lead: Lead, event: CloudEvent[SlaStarted]) -> Details | None:
    if lead.sla_due_at == event.data.due_at:
        return None
    lead.sla_due_at, lead.sla_state = event.data.due_at, SlaState.RUNNING
    return {"obligation": event.data.obligation, "due_at": event.data.due_at.isoformat(), "rep_id": event.data.rep_id}


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
    """Record the response deadline."""
    await _fold(session, events, _apply_deadline)


async def _on_sla_outcome(
    event: CloudEvent[SlaWarning] | CloudEvent[SlaBreached] | CloudEvent[SlaMet], session: AsyncSession, state: SlaState
) -> None:
    lead = await session.get(Lead, event.data.lead_id)
    if lead is None:
        logger.warning("event for a lead intake does not know, ignored")
        return
    lead.sla_state, lead.updated_at = state, utcnow()
    session.add(lead)
    service.add_timeline(
        session,
        lead_id=lead.id,
        event=event,
        details={"obligation": event.data.obligation, "rep_id": event.data.rep_id},
    )


async def on_sla_warning(event: CloudEvent[SlaWarning], session: AsyncSession) -> None:
    """Mark the SLA as close to breach."""
    await _on_sla_outcome(event, session, SlaState.WARNING)


async def on_sla_breached(event: CloudEvent[SlaBreached], session: AsyncSession) -> None:
    """Mark the SLA as breached."""
    await _on_sla_outcome(event, session, SlaState.BREACHED)


async def on_sla_met(event: CloudEvent[SlaMet], session: AsyncSession) -> None:
    """Mark the SLA as met."""
    await _on_sla_outcome(event, session, SlaState.MET)


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
        .on(SlaWarning, on_sla_warning)
        .on(SlaBreached, on_sla_breached)
        .on(SlaMet, on_sla_met)
    )
