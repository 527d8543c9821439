"""Reassignments on SQLite and PostgreSQL: a new timer for the new assignment, the replaced one closed; escalation."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from sqlmodel import col, select

from leadrelay.events import (
    AssignmentTrigger,
    CloudEvent,
    EscalationStep,
    EventData,
    LeadAssigned,
    LeadQueued,
    SlaBreached,
    new_event,
    parse_as,
)
from leadrelay.outbox import OutboxMessage
from leadrelay.stages import SlaState
from leadrelay.testing import Storage, migrated, migrations_of
from sla_monitor.config import SlaMonitorSettings
from sla_monitor.timers import service
from sla_monitor.timers.handlers import on_lead_assigned, on_lead_queued
from sla_monitor.timers.models import REPLACED, SlaTimer

AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
RESPONSE_TIME = timedelta(minutes=5)
TRIGGERS = {True: AssignmentTrigger.ROUTED, False: AssignmentTrigger.SLA_BREACH}


def assigned(sequence: int, rep_id: str, minutes: int) -> CloudEvent[LeadAssigned]:
    data = LeadAssigned(
        lead_id="lead-1",
        assignment_id=f"assignment-{sequence}",
        rep_id=rep_id,
        rule_path=["r"],
        candidates=[rep_id],
        routing_version="1",
        assigned_at=AT + timedelta(minutes=minutes),
        sequence=sequence,
        trigger=TRIGGERS[sequence == 1],
        previous_assignment_id=None if sequence == 1 else f"assignment-{sequence - 1}",
    )
    return new_event(data, source="leadrelay/router")


def queued(sequence: int, minutes: int) -> CloudEvent[LeadQueued]:
    data = LeadQueued(
        lead_id="lead-1",
        assignment_id=f"assignment-{sequence}",
        team_id="sales",
        rule_path=["r"],
        routing_version="1",
        queued_at=AT + timedelta(minutes=minutes),
        sequence=sequence,
        trigger=AssignmentTrigger.MANUAL,
        previous_assignment_id=f"assignment-{sequence - 1}",
    )
    return new_event(data, source="leadrelay/router")


@pytest.fixture
async def storage(database_url: str) -> AsyncIterator[Storage]:
    async with migrated(database_url, migrations_of("sla_monitor")) as storage:
        yield storage


async def deliver(storage: Storage, *events: CloudEvent[LeadAssigned]) -> None:
    async with storage.sessions() as session:
        await on_lead_assigned(list(events), session, response_time=RESPONSE_TIME)
        await session.commit()


async def timers(storage: Storage) -> dict[str, str]:
    async with storage.sessions() as session:
        rows = (await session.exec(select(SlaTimer).order_by(col(SlaTimer.started_at)))).all()
    return {row.assignment_id: row.status for row in rows}


async def test_a_reassignment_starts_its_own_timer_and_closes_the_replaced_one(storage: Storage) -> None:
    await deliver(storage, assigned(1, "rep-ada", 0))
    await deliver(storage, assigned(2, "rep-bob", 6))

    assert await timers(storage) == {"assignment-1": REPLACED, "assignment-2": SlaState.RUNNING}
    async with storage.sessions() as session:
        # The replaced timer is never breached; the new one is, at its own deadline.
        assert await service.breach_due(session=session, now=AT + timedelta(minutes=10)) == 0
        assert await service.breach_due(session=session, now=AT + timedelta(minutes=11)) == 1
        await session.commit()
    assert await timers(storage) == {"assignment-1": REPLACED, "assignment-2": SlaState.BREACHED}


async def test_a_redelivered_older_reassignment_closes_nothing_newer(storage: Storage) -> None:
    await deliver(storage, assigned(1, "rep-ada", 0), assigned(2, "rep-bob", 6), assigned(3, "rep-cy", 12))
    await deliver(storage, assigned(2, "rep-bob", 6))

    assert await timers(storage) == {"assignment-1": REPLACED, "assignment-2": REPLACED, "assignment-3": "running"}


async def test_a_reassignment_to_a_queue_closes_the_replaced_timer(storage: Storage) -> None:
    await deliver(storage, assigned(1, "rep-ada", 0))
    async with storage.sessions() as session:
        await on_lead_queued([queued(2, 3)], session)
        await session.commit()

    assert await timers(storage) == {"assignment-1": REPLACED}


async def test_a_breach_carries_the_configured_escalation(storage: Storage) -> None:
    await deliver(storage, assigned(1, "rep-ada", 0))
    escalation = [EscalationStep.REMIND, EscalationStep.REASSIGN]
    async with storage.sessions() as session:
        assert await service.breach_due(session=session, now=AT + RESPONSE_TIME, escalation=escalation) == 1
        await session.commit()
        rows = (await session.exec(select(OutboxMessage).where(OutboxMessage.event_type == "sla.breached"))).all()
    breaches: list[EventData] = [parse_as(row.payload, SlaBreached).data for row in rows]
    assert [(b.assignment_id, b.escalation) for b in breaches if isinstance(b, SlaBreached)] == [
        ("assignment-1", escalation)
    ]


ESCALATIONS = {
    "default": (None, [EscalationStep.REASSIGN]),
    "a list": (" remind, reassign ,notify_manager", ["remind", "reassign", "notify_manager"]),
    "none": ("", []),
}


@pytest.mark.parametrize(("value", "expected"), ESCALATIONS.values(), ids=ESCALATIONS.keys())
def test_sla_breach_escalation_setting(monkeypatch: pytest.MonkeyPatch, value: str | None, expected: list[str]) -> None:
    if value is not None:
        monkeypatch.setenv("SLA_BREACH_ESCALATION", value)
    assert SlaMonitorSettings().sla_breach_escalation == expected


def test_an_unknown_escalation_step_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLA_BREACH_ESCALATION", "reassign,page_the_ceo")
    with pytest.raises(ValidationError, match="sla_breach_escalation"):
        SlaMonitorSettings()
