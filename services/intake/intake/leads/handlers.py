"""Events other services publish, folded into the lead read model."""

import logging

from sqlmodel.ext.asyncio.session import AsyncSession

from intake.leads import service
from intake.leads.models import Lead
from leadrelay.events import CloudEvent, LeadAssigned, LeadScored, SlaBreached, SlaMet, SlaStarted, SlaWarning, utcnow
from leadrelay.kafka import HandlerMap
from leadrelay.stages import SlaState

logger = logging.getLogger(__name__)


async def _lead_for(session: AsyncSession, lead_id: str) -> Lead | None:
    lead = await session.get(Lead, lead_id)
    if lead is None:
        logger.warning("event for a lead intake does not know, ignored")
    return lead


async def on_lead_scored(event: CloudEvent[LeadScored], session: AsyncSession) -> None:
    """Record score, ICP version and stage."""
    lead = await _lead_for(session, event.data.lead_id)
    if lead is None or (lead.score, lead.icp_version) == (event.data.score, event.data.icp_version):
        return  # unknown lead, or the same score announced again after a re-drive
    lead.score, lead.icp_version, lead.updated_at = event.data.score, event.data.icp_version, utcnow()
    service.advance_stage(lead, event.data.stage)
    session.add(lead)
    service.add_timeline(
        session,
        lead_id=lead.id,
        event=event,
        details={
            "score": event.data.score,
            "stage": event.data.stage,
            "icp_version": event.data.icp_version,
            "explanation": [criterion.model_dump() for criterion in event.data.explanation],
        },
    )


async def on_lead_assigned(event: CloudEvent[LeadAssigned], session: AsyncSession) -> None:
    """Record the owner; a re-announced assignment (after a re-drive) adds nothing."""
    lead = await _lead_for(session, event.data.lead_id)
    if lead is None or lead.assignment_id == event.data.assignment_id:
        return
    lead.owner_rep_id, lead.assignment_id, lead.updated_at = event.data.rep_id, event.data.assignment_id, utcnow()
    session.add(lead)
    service.add_timeline(
        session,
        lead_id=lead.id,
        event=event,
        details={"rep_id": event.data.rep_id, "rule_path": event.data.rule_path, "candidates": event.data.candidates},
    )


async def on_sla_started(event: CloudEvent[SlaStarted], session: AsyncSession) -> None:
    """Record the response deadline."""
    lead = await _lead_for(session, event.data.lead_id)
    if lead is None or lead.sla_due_at == event.data.due_at:
        return  # unknown lead, or the same deadline announced again after a re-drive
    lead.sla_due_at, lead.sla_state, lead.updated_at = event.data.due_at, SlaState.RUNNING, utcnow()
    session.add(lead)
    service.add_timeline(
        session,
        lead_id=lead.id,
        event=event,
        details={
            "obligation": event.data.obligation,
            "due_at": event.data.due_at.isoformat(),
            "rep_id": event.data.rep_id,
        },
    )


async def _on_sla_outcome(
    event: CloudEvent[SlaWarning] | CloudEvent[SlaBreached] | CloudEvent[SlaMet], session: AsyncSession, state: str
) -> None:
    lead = await _lead_for(session, event.data.lead_id)
    if lead is None:
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


HANDLERS: HandlerMap = {
    LeadScored: on_lead_scored,
    LeadAssigned: on_lead_assigned,
    SlaStarted: on_sla_started,
    SlaWarning: on_sla_warning,
    SlaBreached: on_sla_breached,
    SlaMet: on_sla_met,
}
