"""Events other services publish, folded into the lead read model."""

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from intake.config import IntakeSettings
from intake.leads import service
from intake.leads.models import Lead
from leadrelay.consumer import Handlers
from leadrelay.events import (
    CloudEvent,
    EventData,
    LeadAssigned,
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


def _apply_assignment(lead: Lead, event: CloudEvent[LeadAssigned]) -> Details | None:
    if lead.assignment_id == event.data.assignment_id:
        return None
    lead.owner_rep_id, lead.assignment_id = event.data.rep_id, event.data.assignment_id
    return {"rep_id": event.data.rep_id, "rule_path": event.data.rule_path, "candidates": event.data.candidates}


def _apply_deadline(lead: Lead, event: CloudEvent[SlaStarted]) -> Details | None:
    if lead.sla_due_at == event.data.due_at:
        return None
    lead.sla_due_at, lead.sla_state = event.data.due_at, SlaState.RUNNING
    return {"obligation": event.data.obligation, "due_at": event.data.due_at.isoformat(), "rep_id": event.data.rep_id}


async def on_lead_scored(events: Sequence[CloudEvent[LeadScored]], session: AsyncSession) -> None:
    """Record score, ICP version and stage."""
    await _fold(session, events, _apply_score)


async def on_lead_assigned(events: Sequence[CloudEvent[LeadAssigned]], session: AsyncSession) -> None:
    """Record the owner."""
    await _fold(session, events, _apply_assignment)


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
    """Message type to handler; the hot path (scored, assigned, started) takes whole runs at once."""
    del settings  # the read model needs no settings; every service declares its handlers the same way
    return (
        Handlers()
        .on_batch(LeadScored, on_lead_scored)
        .on_batch(LeadAssigned, on_lead_assigned)
        .on_batch(SlaStarted, on_sla_started)
        .on(SlaWarning, on_sla_warning)
        .on(SlaBreached, on_sla_breached)
        .on(SlaMet, on_sla_met)
    )
