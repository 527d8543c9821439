"""Lead logic: accept, read, update the read model from events, re-drive leads stuck in flight."""

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Protocol
from uuid import UUID

from aiokafka.structs import RecordMetadata
from sqlalchemy import bindparam, func, update
from sqlalchemy.exc import DBAPIError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from intake.leads import normalise
from intake.leads.models import Lead, LeadBase, RoutingOutcome, TimelineEntry
from intake.leads.schemas import (
    MAX_ATTRIBUTES_BYTES,
    AcceptStatus,
    BatchItemResult,
    BatchItemStatus,
    LeadAccepted,
    LeadBatchResults,
    LeadCreate,
)
from leadrelay import db, idempotency_keys, outbox
from leadrelay.batching import Bulk, GroupCommitter
from leadrelay.events import CloudEvent, LeadActivity, LeadReceived, new_event, utcnow
from leadrelay.idempotency_keys import Answer, IdempotentRequest
from leadrelay.kafka import LogPosition
from leadrelay.outbox import OutboxMessage
from leadrelay.problems import Problem
from leadrelay.stages import TRANSITIONS, ActivityType, LeadStage, SlaState

SOURCE = "leadrelay/intake"
_DEADLOCK_DETECTED = "40P01"  # PostgreSQL's SQLSTATE for a transaction it rolled back to break a deadlock
REENGAGED_ENTRY = "lead.reengaged"
"""Timeline type of a known person's new submission (it publishes no event of its own yet)."""

logger = logging.getLogger(__name__)


_RECEIVED_FIELDS = tuple(name for name in LeadReceived.model_fields if name not in {"lead_id", "redrive"})


def _received_event(lead: Mapping[str, Any], *, redrive: bool = False) -> CloudEvent[LeadReceived]:
    return new_event(
        LeadReceived(lead_id=lead["id"], redrive=redrive, **{name: lead[name] for name in _RECEIVED_FIELDS}),
        source=SOURCE,
    )


def add_timeline(session: AsyncSession, *, lead_id: str, event: CloudEvent[Any], details: dict[str, Any]) -> None:
    """Append an event to a lead's timeline when the transaction commits (once per event id: the consumer dedupes)."""
    add_timeline_rows(session, [timeline_row(lead_id=lead_id, event=event, details=details)])


def timeline_row(*, lead_id: str, event: CloudEvent[Any], details: dict[str, Any]) -> dict[str, Any]:
    """A timeline entry as a plain row for `add_timeline_rows` (a TimelineEntry costs more to build than to insert)."""
    return {"lead_id": lead_id, "event_id": event.id, "type": event.type, "occurred_at": event.time, "details": details}


def add_timeline_rows(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Append timeline entries when the transaction commits, together in one statement."""
    db.stage_insert(session, TimelineEntry, rows)


@dataclass(frozen=True)
class StagedLead:
    """A submission staged in a transaction: a new lead, or a known person re-engaged."""

    lead_id: str
    status: AcceptStatus


@dataclass
class NewLead:
    """A submission made ready outside the transaction: the lead it would be, its lead.received, and whether it was."""

    row: dict[str, Any]
    event: CloudEvent[LeadReceived]
    inserted: bool | None = None
    """Set by `insert_new`: True when the lead was inserted, False when its person is known."""


def _prepare(lead_in: LeadCreate) -> NewLead:
    facts = normalise.email_facts(lead_in.email)
    row = db.new_row(
        Lead,
        **lead_in.model_dump(),
        email_domain=facts.domain,
        email_free_mail=facts.free_mail,
        email_disposable=facts.disposable,
        email_lookalike=facts.lookalike,
    )
    event = _received_event(row)
    row["received_event_id"] = event.id
    return NewLead(row, event)


async def create(
    *, writer: GroupCommitter, lead_in: LeadCreate, idempotency: IdempotentRequest | None = None
) -> Answer:
    """Stage a lead (or re-engage its person) and answer 202 once committed; a retry with the same key repeats it."""
    new = _prepare(lead_in)

    # Without a key the lead is inserted with the rest of its group commit, in one statement; with
    # one it may not be inserted at all (a retry answers the first answer), so the work inserts it.
    bulk = Bulk(insert_new, new) if idempotency is None else None

    async def accept(session: AsyncSession) -> Answer:
        if bulk is None:
            await insert_new(session, [new])
        staged = await _stage_lead(session, lead_in=lead_in, new=new)
        body = LeadAccepted(id=staged.lead_id, status=staged.status).model_dump(mode="json")
        return Answer(status_code=202, body=body)

    return await _submit(writer, partial(idempotency_keys.answer_once, request=idempotency, work=accept), bulk=bulk)


async def create_many(
    *, writer: GroupCommitter, items: Sequence[LeadCreate | Problem], idempotency: IdempotentRequest | None = None
) -> Answer:
    """Stage every valid item in one transaction; each item gets its own result, in order."""

    async def accept(session: AsyncSession) -> Answer:
        results = {
            index: BatchItemResult(index=index, status=BatchItemStatus.REJECTED, problem=item)
            for index, item in enumerate(items)
            if isinstance(item, Problem)
        }
        valid = [(index, item) for index, item in enumerate(items) if isinstance(item, LeadCreate)]
        # People in one order in every batch: two batches locking the same leads then never deadlock.
        prepared = [(index, item, _prepare(item)) for index, item in sorted(valid, key=lambda pair: pair[1].email)]
        await insert_new(session, [new for _index, _item, new in prepared])
        for index, item, new in prepared:
            staged = await _stage_lead(session, lead_in=item, new=new)
            results[index] = BatchItemResult(index=index, id=staged.lead_id, status=BatchItemStatus(staged.status))
        ordered = [results[index] for index in range(len(items))]
        return Answer(status_code=202, body=LeadBatchResults(results=ordered).model_dump(mode="json"))

    return await _submit(writer, partial(idempotency_keys.answer_once, request=idempotency, work=accept))


DEADLOCK_RETRIES = 3


async def _submit(
    writer: GroupCommitter, work: Callable[[AsyncSession], Awaitable[Answer]], *, bulk: Bulk[NewLead] | None = None
) -> Answer:
    """Run the work in a group commit, again if PostgreSQL broke a deadlock by rolling it back.

    Two transactions can lock the same people in opposite orders (two batches, two workers); the
    database rolls one back, and the work, which changed nothing, can simply run again.
    """
    for attempt in range(DEADLOCK_RETRIES + 1):
        try:
            return await writer.submit(work, bulk=bulk)
        except DBAPIError as exc:
            if attempt == DEADLOCK_RETRIES or getattr(exc.orig, "sqlstate", None) != _DEADLOCK_DETECTED:
                raise
            logger.info("deadlock broken by the database, running the work again", extra={"attempt": attempt + 1})
    raise AssertionError("unreachable")


async def insert_new(session: AsyncSession, leads: list[NewLead]) -> None:
    """Insert the leads whose email or crm_id no lead holds, in one statement; each learns whether it was.

    The database decides, not a prior read: the unique keys (email among unmerged leads, crm_id)
    refuse exactly the known people. Rows go in the order given, so of two naming one person the
    first is inserted and the second re-engages it, as one after the other would.
    """
    if not leads:
        return
    connection = await session.connection()
    statement = _INSERT_UNLESS_KNOWN[connection.dialect.name]
    inserted = set((await connection.execute(statement, [lead.row for lead in leads])).scalars().all())
    for lead in leads:
        lead.inserted = lead.row["id"] in inserted


async def _stage_lead(session: AsyncSession, *, lead_in: LeadCreate, new: NewLead) -> StagedLead:
    """Stage a submission after `insert_new` tried it in this transaction: its lead.received, or a re-engagement.

    Inserting first suits most submissions (new people); each attempt of a transaction inserts
    afresh, as what an attempt that rolled back inserted is gone.
    """
    if new.inserted is None:
        raise RuntimeError("insert_new must try the lead in this transaction first")
    lead, event = new.row, new.event
    if new.inserted:
        add_timeline(
            session, lead_id=lead["id"], event=event, details={"source": lead["source"], "campaign": lead["campaign"]}
        )
        outbox.add(session, event)
        return StagedLead(lead_id=lead["id"], status=AcceptStatus.ACCEPTED)
    known = await _find_person(session, lead_in=lead_in)
    if known is None:
        raise RuntimeError("a lead conflicted on a unique key but no lead holds the person's email or crm_id")
    await _reengage(session, lead=known, lead_in=lead_in)
    return StagedLead(lead_id=known.id, status=AcceptStatus.REENGAGED)


async def _find_person(session: AsyncSession, *, lead_in: LeadCreate) -> Lead | None:
    """The lead of the person a submission names: by crm_id first (the CRM's own identity), then by email.

    Locked until the transaction ends (a row lock on PostgreSQL, the writer lock on SQLite), so
    concurrent re-engagements of one person take turns (attributes are merged from what was read);
    read afresh, as an earlier submission in the same group commit may have changed it.
    """
    await db.begin_writing(session, Lead)
    if lead_in.crm_id is not None:
        statement = (
            select(Lead)
            .where(col(Lead.crm_id) == lead_in.crm_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        by_crm_id = (await session.exec(statement)).first()
        if by_crm_id is not None:
            return by_crm_id
    statement = (
        select(Lead)
        .where(col(Lead.email) == lead_in.email, col(Lead.merged_into_id).is_(None))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.exec(statement)).first()


# Built once: a statement with its values inline would be compiled (and cache-keyed) anew per lead.
_INSERT_UNLESS_KNOWN = db.per_dialect(
    lambda dialect: dialect.insert(Lead).on_conflict_do_nothing().returning(col(Lead.id))
)


_FILLABLE = tuple(name for name in LeadBase.model_fields if name not in {"email", "source"})


async def _reengage(session: AsyncSession, *, lead: Lead, lead_in: LeadCreate) -> None:
    """A known person came back: fill the lead's empty fields and add an engagement to its timeline.

    The lead was read under the transaction's lock (`_find_person`), so the attributes merged from
    it are current; the UPDATE also fills only what is still empty and counts in the database.
    """
    offered = {name: getattr(lead_in, name) for name in _FILLABLE if getattr(lead_in, name) is not None}
    filled = [name for name in offered if getattr(lead, name) is None]
    values: dict[str, Any] = {name: func.coalesce(getattr(Lead, name), value) for name, value in offered.items()}
    new_attributes = {key: value for key, value in lead_in.attributes.items() if key not in lead.attributes}
    merged = {**lead.attributes, **new_attributes}
    # Kept within the same bound as a new lead's attributes, so events about it stay small.
    if new_attributes and len(json.dumps(merged, default=str)) <= MAX_ATTRIBUTES_BYTES:
        values["attributes"] = merged
        filled.append("attributes")
    now = utcnow()
    values.update(reengaged_at=now, updated_at=now, reengagement_count=col(Lead.reengagement_count) + 1)
    await session.exec(update(Lead).where(col(Lead.id) == lead.id).values(**values))
    # An engagement like any other: scoring (issue 8) re-scores the lead on it.
    engagement = new_event(
        LeadActivity(
            lead_id=lead.id,
            rep_id="",
            activity=ActivityType.REENGAGED,
            occurred_at=now,
            stage=lead.stage,
            recorded_at=now,
        ),
        source=SOURCE,
    )
    outbox.add(session, engagement)
    entry = {
        "lead_id": lead.id,
        "event_id": engagement.id,
        "type": REENGAGED_ENTRY,
        "occurred_at": now,
        "details": {
            "source": lead_in.source,
            "campaign": lead_in.campaign,
            "utm_campaign": lead_in.utm_campaign,
            "filled": sorted(filled),
        },
    }
    add_timeline_rows(session, [entry])


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
        event = _received_event(lead.model_dump(), redrive=True)
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


class Staged(Protocol):
    """What the stage rules read and move: a Lead, or the read-model handlers' plain view of one."""

    stage: LeadStage
    routing_outcome: str | None


def advance_stage(lead: Staged, stage: LeadStage) -> None:
    """Apply a scoring stage unless a rep has already moved the lead further, or routing nurtured it."""
    if not lead.stage.set_by_scoring:
        return
    # lead.scored and lead.nurtured travel on different topics, so either may arrive first: a lead
    # the router handed back to marketing stays in nurture until scoring calls it an MQL.
    if lead.routing_outcome == RoutingOutcome.NURTURED and lead.stage is LeadStage.NURTURE and stage is LeadStage.LEAD:
        return
    lead.stage = stage


def nurture(lead: Staged) -> bool:
    """Move a lead the router nurtured to stage nurture where the lifecycle allows it; False keeps its stage."""
    target = TRANSITIONS.get((lead.stage, ActivityType.NURTURE))
    if target is None:
        return False
    lead.stage = target
    return True


async def list_leads(
    *,
    session: AsyncSession,
    stage: LeadStage | None = None,
    owner_rep_id: str | None = None,
    queue_team_id: str | None = None,
    routing_outcome: RoutingOutcome | None = None,
    source: str | None = None,
    grade: str | None = None,
    mql: bool | None = None,
    sla_state: SlaState | None = None,
    updated_since: datetime | None = None,
    after: tuple[datetime, str] | None = None,
    limit: int,
) -> list[Lead]:
    """Leads matching the filters in (received_at, id) order, after a position.

    The order never changes for a lead (an update does not move it), so paging returns every lead
    that existed when it began exactly once, whatever is inserted or updated meanwhile.
    """
    statement = select(Lead)
    if stage is not None:
        statement = statement.where(col(Lead.stage) == stage)
    if owner_rep_id is not None:
        statement = statement.where(col(Lead.owner_rep_id) == owner_rep_id)
    if queue_team_id is not None:
        statement = statement.where(col(Lead.queue_team_id) == queue_team_id)
    if routing_outcome is not None:
        statement = statement.where(col(Lead.routing_outcome) == routing_outcome)
    if source is not None:
        statement = statement.where(col(Lead.source) == source)
    if grade is not None:
        statement = statement.where(col(Lead.grade) == grade)
    if mql is not None:
        statement = statement.where(col(Lead.mql) == mql)
    if sla_state is not None:  # the lead's summary: its most urgent open obligation
        statement = statement.where(col(Lead.sla_state) == sla_state)
    if updated_since is not None:
        statement = statement.where(col(Lead.updated_at) >= updated_since)
    if after is not None:
        received_at, lead_id = after
        statement = statement.where(
            (col(Lead.received_at) > received_at) | ((col(Lead.received_at) == received_at) & (col(Lead.id) > lead_id))
        )
    statement = statement.order_by(col(Lead.received_at), col(Lead.id)).limit(limit)
    return list((await session.exec(statement)).all())


async def accept_many(session: AsyncSession, *, leads_in: Sequence[LeadCreate]) -> list[str]:
    """Stage leads (or re-engage their people) in the caller's transaction (the caller commits); their ids."""
    prepared = [(lead_in, _prepare(lead_in)) for lead_in in leads_in]
    await insert_new(session, [new for _lead_in, new in prepared])
    return [(await _stage_lead(session, lead_in=lead_in, new=new)).lead_id for lead_in, new in prepared]
