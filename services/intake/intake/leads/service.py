"""Lead logic: accept, read, update the read model from events, re-drive leads stuck in flight."""

import logging
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import Any
from uuid import UUID

from aiokafka.structs import RecordMetadata
from sqlalchemy import bindparam, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from intake.leads.models import Lead, TimelineEntry
from intake.leads.schemas import LeadCreate
from leadrelay import outbox
from leadrelay.batching import GroupCommitter
from leadrelay.events import CloudEvent, LeadReceived, new_event, utcnow
from leadrelay.kafka import LogPosition
from leadrelay.outbox import OutboxMessage
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
    lead.received_event_id = event.id
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


def _in_flight() -> Any:
    # No SLA deadline yet: the lead has not made it through scoring, routing and the sla-monitor.
    return col(Lead.sla_due_at).is_(None)


async def record_published(
    session: AsyncSession, rows: Sequence[OutboxMessage], stored: Sequence[RecordMetadata]
) -> None:
    """Remember where the broker stored each lead.received (runs in the relay's transaction)."""
    positions = [
        {"lead_id": row.key, "event_id": row.event_id, "partition": meta.partition, "offset": meta.offset}
        for row, meta in zip(rows, stored, strict=True)
        if row.event_type == LeadReceived.event_type
    ]
    if not positions:
        return
    now = utcnow()
    statement = (
        update(Lead)
        .where(col(Lead.id) == bindparam("lead_id"), col(Lead.received_event_id) == bindparam("event_id"))
        .values(published_partition=bindparam("partition"), published_offset=bindparam("offset"), published_at=now)
    )
    await (await session.connection()).execute(statement, positions)


async def published_in_flight(
    *, session: AsyncSession, published_before: datetime, after: Lead | None = None, limit: int
) -> list[Lead]:
    """In-flight leads whose lead.received the broker acknowledged before `published_before`, oldest first.

    `after` pages on: the leads that come after that one in the same order.
    """
    window = col(Lead.published_at) < published_before
    if after is not None:
        window = window & (
            (col(Lead.published_at) > after.published_at)
            | ((col(Lead.published_at) == after.published_at) & (col(Lead.id) > after.id))
        )
    statement = select(Lead).where(_in_flight(), window).order_by(col(Lead.published_at), col(Lead.id)).limit(limit)
    return list((await session.exec(statement)).all())


def log_positions(leads: Sequence[Lead]) -> list[LogPosition]:
    """Where the broker said it stored each lead's latest lead.received."""
    return [
        LogPosition(
            topic=LeadReceived.topic.value,
            partition=lead.published_partition,
            offset=lead.published_offset,
            event_id=lead.received_event_id,
        )
        for lead in leads
        if lead.published_partition is not None and lead.published_offset is not None and lead.received_event_id
    ]


async def redrive(*, session: AsyncSession, lead_ids: Sequence[str], max_attempts: int) -> int:
    """Publish lead.received again for these in-flight leads (at most `max_attempts` times each).

    Only for leads whose event the broker lost: every downstream handler is idempotent per lead, so
    a re-drive is safe, but re-publishing what is merely queued would only add load.
    """
    if not lead_ids:
        return 0
    statement = select(Lead).where(col(Lead.id).in_(lead_ids), _in_flight(), col(Lead.redrive_count) < max_attempts)
    leads = (await session.exec(statement)).all()
    now = utcnow()
    for lead in leads:
        lead.redriven_at, lead.redrive_count = now, lead.redrive_count + 1
        if lead.redrive_count == max_attempts:
            logger.warning("lead re-driven for the last time; check the dead-letter topics", extra={"lead_id": lead.id})
        event = _received_event(lead, redrive=True)
        lead.received_event_id, lead.published_partition, lead.published_offset, lead.published_at = (
            event.id,
            None,
            None,
            None,
        )
        session.add(lead)
        outbox.add(session, event)
    await session.commit()
    return len(leads)


def advance_stage(lead: Lead, stage: LeadStage) -> None:
    """Apply a scoring stage unless a rep has already moved the lead further."""
    if lead.stage.set_by_scoring:
        lead.stage = stage


async def accept_many(session: AsyncSession, *, leads_in: Sequence[LeadCreate]) -> list[Lead]:
    """Stage leads and their lead.received events in the caller's transaction (the caller commits)."""
    return [await _stage_new_lead(session, lead_in=lead_in) for lead_in in leads_in]
