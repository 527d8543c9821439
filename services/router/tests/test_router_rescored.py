"""Re-scores on SQLite and PostgreSQL: an assigned lead is not announced again unless lead.received was re-driven."""

from datetime import UTC, datetime
from typing import Any

from sqlmodel import col, select

from leadrelay.events import CloudEvent, LeadAssigned, LeadReceived, LeadScored, ScoreTrigger, new_event, parse_as
from leadrelay.outbox import OutboxMessage
from leadrelay.stages import LeadStage
from leadrelay.testing import Storage, migrated, migrations_of
from router.assignments.handlers import on_lead_scored
from router.assignments.models import Assignment
from router.config import RouterSettings
from router.context import RouterContext
from router.defaults import ensure_defaults
from router.reps.crypto import channel_box

AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _scored(lead_id: str, trigger: ScoreTrigger, **fields: Any) -> CloudEvent[LeadScored]:
    lead = LeadReceived(lead_id=lead_id, email=f"{lead_id}@example.com", source="api", received_at=AT)
    scored = LeadScored(
        lead_id=lead_id,
        score=60,
        stage=LeadStage.MQL,
        icp_version="1",
        explanation=[],
        scored_at=AT,
        lead=lead,
        trigger=trigger,
        **fields,
    )
    return new_event(scored, source="leadrelay/scoring")


async def _deliver(storage: Storage, *events: CloudEvent[LeadScored]) -> None:
    context = RouterContext.of(RouterSettings(database_url=storage.url))
    async with storage.sessions() as session:
        await on_lead_scored(list(events), session, context=context)
        await session.commit()


async def _announced(storage: Storage) -> list[LeadAssigned]:
    async with storage.sessions() as session:
        rows = (await session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id)))).all()
    return [parse_as(row.payload, LeadAssigned).data for row in rows if row.event_type == "lead.assigned"]


async def test_only_new_assignments_and_re_driven_leads_are_announced(database_url: str) -> None:
    async with migrated(database_url, migrations_of("router")) as storage:
        await ensure_defaults(sessions=storage.sessions, default_rep_id="rep-default", box=channel_box("k" * 32))
        await _deliver(storage, _scored("lead-1", ScoreTrigger.RECEIVED))
        [first] = await _announced(storage)

        # Engagement and a new ICP re-score the assigned lead: no new lead.assigned, no restarted SLA clock.
        await _deliver(storage, _scored("lead-1", ScoreTrigger.ENGAGEMENT, grade="A2", mql=True))
        await _deliver(storage, _scored("lead-1", ScoreTrigger.ICP_ACTIVATED, grade="A1", mql=True))
        assert await _announced(storage) == [first]

        # A re-driven lead.received: its lead.assigned may have been lost, so it is announced again.
        await _deliver(storage, _scored("lead-1", ScoreTrigger.RECEIVED))
        announced = await _announced(storage)
        assert [(event.lead_id, event.assignment_id) for event in announced] == [("lead-1", first.assignment_id)] * 2

        # A lead first seen through a re-score is assigned as any other; one run, one announcement per lead.
        await _deliver(
            storage,
            _scored("lead-2", ScoreTrigger.ENGAGEMENT),
            _scored("lead-2", ScoreTrigger.ICP_ACTIVATED),
            _scored("lead-2", ScoreTrigger.RECEIVED),
            _scored("lead-1", ScoreTrigger.ENGAGEMENT),
        )
        announced = await _announced(storage)
        assert [event.lead_id for event in announced] == ["lead-1", "lead-1", "lead-2"]
        async with storage.sessions() as session:
            assignments = (await session.exec(select(Assignment).order_by(col(Assignment.lead_id)))).all()
        assert [(row.lead_id, row.id) for row in assignments] == [
            ("lead-1", first.assignment_id),
            ("lead-2", announced[-1].assignment_id),
        ]
