"""Lead logic: accept, read, update the read model from events, re-drive leads stuck in flight."""

import logging
from datetime import datetime
from functools import partial
from typing import Any
from uuid import UUID

from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from intake.leads.models import Lead, TimelineEntry
from intake.leads.schemas import LeadCreate
from leadrelay import outbox
from leadrelay.batching import GroupCommitter
from leadrelay.events import CloudEvent, LeadReceived, new_event, utcnow
from leadrelay.stages import LeadStage

SOURCE = "leadrelay/intake"

logger = logging.getLogger(__name__)


def _received_event(lead: Lead, *, redrive: bool = False) -> CloudEvent[LeadReceived]:
    return new_event(
        LeadReceived(
            lead_id=lead.id,
            email=lead.email,
            first_name=lead.first_name,
            last_name=lead.last_name,
            company=lead.company,
            job_title=lead.job_title,
            phone=lead.phone,
            country=lead.country,
            source=lead.source,
            campaign=lead.campaign,
            received_at=lead.received_at,
            redrive=redrive,
            attributes=lead.attributes,
        ),
        source=SOURCE,
    )


def add_timeline(session: AsyncSession, *, lead_id: str, event: CloudEvent[Any], details: dict[str, Any]) -> None:
    """Append an event to a lead's timeline (once per event id: the consumer already dedupes)."""
    session.add(
        TimelineEntry(lead_id=lead_id, event_id=event.id, type=event.type, occurred_at=event.time, details=details)
    )


async def create(*, writer: GroupCommitter, lead_in: LeadCreate) -> Lead:
    """Store a lead and its lead.received event; returns once committed (in a group commit)."""
    return await writer.submit(partial(_stage_new_lead, lead_in=lead_in))


async def _stage_new_lead(session: AsyncSession, *, lead_in: LeadCreate) -> Lead:
    lead = Lead(**lead_in.model_dump())  # already validated: table models skip re-validation
    event = _received_event(lead)
    session.add(lead)
    add_timeline(session, lead_id=lead.id, event=event, details={"source": lead.source, "campaign": lead.campaign})
    outbox.add(session, event)
    return lead


async def get(*, session: AsyncSession, lead_id: str) -> Lead | None:
    """A lead by id (ids are UUIDs: anything else cannot name a lead)."""
    try:
        UUID(lead_id)
    except ValueError:
        return None
    return await session.get(Lead, lead_id)


async def get_timeline(*, session: AsyncSession, lead_id: str) -> list[TimelineEntry]:
    """A lead's events, oldest first."""
    statement = (
        select(TimelineEntry)
        .where(TimelineEntry.lead_id == lead_id)
        .order_by(col(TimelineEntry.occurred_at), col(TimelineEntry.id))
    )
    return list((await session.exec(statement)).all())


async def redrive_in_flight(
    *, session: AsyncSession, published_before: datetime, max_attempts: int, limit: int = 500
) -> int:
    """Publish lead.received again for leads that never got an SLA deadline, oldest first.

    The embedded broker keeps nothing across restarts and any broker can lose a consumer's
    output before the next service reads it; every downstream handler is idempotent per lead,
    so re-driving is always safe. A lead is re-driven at most `max_attempts` times.
    """
    last_published = or_(
        col(Lead.redriven_at) < published_before,
        (col(Lead.redriven_at).is_(None)) & (col(Lead.received_at) < published_before),
    )
    statement = (
        select(Lead)
        .where(col(Lead.sla_due_at).is_(None), col(Lead.redrive_count) < max_attempts, last_published)
        .order_by(col(Lead.received_at))
        .limit(limit)
    )
    leads = (await session.exec(statement)).all()
    now = utcnow()
    for lead in leads:
        lead.redriven_at, lead.redrive_count = now, lead.redrive_count + 1
        if lead.redrive_count == max_attempts:
            logger.warning("lead re-driven for the last time; check the dead-letter topics", extra={"lead_id": lead.id})
        session.add(lead)
        outbox.add(session, _received_event(lead, redrive=True))
    await session.commit()
    return len(leads)


def advance_stage(lead: Lead, stage: LeadStage) -> None:
    """Apply a scoring stage unless a rep has already moved the lead further."""
    if lead.stage.set_by_scoring:
        lead.stage = stage
