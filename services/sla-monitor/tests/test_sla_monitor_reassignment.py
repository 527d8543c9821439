"""Reassignments on SQLite and PostgreSQL: the older assignment's open timers are replaced; per obligation the new
one restarts its window or keeps the deadline (warned state too; a breached one restarts); escalation on breach."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

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
    SlaCancelled,
    new_event,
    parse_event,
)
from leadrelay.outbox import OutboxMessage
from leadrelay.stages import SlaState
from leadrelay.testing import Storage, migrated, migrations_of
from sla_monitor.config import SlaMonitorSettings
from sla_monitor.context import SlaContext
from sla_monitor.policy.document import SlaDocument
from sla_monitor.policy.service import CompiledPolicy, Policies
from sla_monitor.timers import service
from sla_monitor.timers.handlers import calendars, on_lead_assigned, on_lead_queued
from sla_monitor.timers.models import REPLACED, SlaTimer

AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
TRIGGERS = {True: AssignmentTrigger.ROUTED, False: AssignmentTrigger.SLA_BREACH}
POLICY: dict[str, Any] = {
    "obligations": [
        {"name": "accept", "met_by": ["accepted"], "clock": "wall", "targets": [{"within": "10m"}],
         "warn_at": 0.5, "escalation": ["remind", "reassign"], "on_reassignment": "restart"},
        {"name": "disposition", "met_by": ["qualified"], "clock": "wall", "targets": [{"within": "60m"}],
         "warn_at": 0.5, "escalation": ["notify_manager"], "on_reassignment": "keep"},
    ]
}  # fmt: skip


def context_with(policy: CompiledPolicy | None) -> SlaContext:
    context = SlaContext.of(SlaMonitorSettings(_env_file=None, first_response_seconds=300))  # type: ignore[call-arg]
    if policy is not None:
        context.policies = Policies(builtin=policy)
    return context


POLICIES = {
    "builtin": None,
    "signed": CompiledPolicy(version="3", document=SlaDocument.model_validate(POLICY)),
}


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


async def deliver(storage: Storage, context: SlaContext, *events: CloudEvent[LeadAssigned]) -> None:
    async with storage.sessions() as session:
        await on_lead_assigned(list(events), session, context=context)
        await session.commit()


async def fire(storage: Storage, minutes: float) -> int:
    async with storage.sessions() as session:
        fired = await service.fire_due(
            session=session,
            now=AT + timedelta(minutes=minutes),
            limit=100,
            calendar_of=calendars(context_with(None), session),
            changes=service.Changes(),
        )
        await session.commit()
    return fired


async def timers(storage: Storage) -> dict[str, SlaTimer]:
    async with storage.sessions() as session:
        rows = (await session.exec(select(SlaTimer).order_by(col(SlaTimer.sequence)))).all()
    return {f"{row.assignment_id}/{row.obligation}": row for row in rows}


async def statuses(storage: Storage) -> dict[str, str]:
    return {key: timer.status for key, timer in (await timers(storage)).items()}


async def published(storage: Storage, event_type: str) -> list[EventData]:
    async with storage.sessions() as session:
        rows = (await session.exec(select(OutboxMessage).where(OutboxMessage.event_type == event_type))).all()
    return [parse_event(row.payload).data for row in rows]


@pytest.mark.parametrize("policy", POLICIES.values(), ids=POLICIES.keys())
async def test_a_reassignment_replaces_the_older_timers(storage: Storage, policy: CompiledPolicy | None) -> None:
    context = context_with(policy)
    await deliver(storage, context, assigned(1, "rep-ada", 0))
    await deliver(storage, context, assigned(2, "rep-bob", 6))

    before = await timers(storage)
    obligation = "first_response" if policy is None else "accept"
    old, new = before[f"assignment-1/{obligation}"], before[f"assignment-2/{obligation}"]
    assert (old.status, old.close_reason, old.closed_at, old.next_at) == (
        REPLACED, "reassigned", AT + timedelta(minutes=6), None)  # fmt: skip
    assert (new.status, new.started_at) == (SlaState.RUNNING, AT + timedelta(minutes=6))  # restart: a whole window
    cancelled = await published(storage, "sla.cancelled")
    assert [(c.assignment_id, c.obligation, c.reason) for c in cancelled if isinstance(c, SlaCancelled)][:1] == [
        ("assignment-1", obligation, "reassigned")
    ]
    assert (
        context.metrics.registry.get_sample_value(
            "leadrelay_sla_cancelled_total", {"obligation": obligation, "reason": "reassigned"}
        )
        == 1
    )

    # The replaced timer is never fired; the new one is, at its own instants.
    window = 5 if policy is None else 10
    assert await fire(storage, 6 + window - 0.01) == 1  # the new one's warning
    assert await fire(storage, 6 + window) == 1
    after = await statuses(storage)
    assert (after[f"assignment-1/{obligation}"], after[f"assignment-2/{obligation}"]) == (REPLACED, SlaState.BREACHED)


async def test_keep_carries_the_deadline_and_the_warning_over(storage: Storage) -> None:
    context = context_with(POLICIES["signed"])
    await deliver(storage, context, assigned(1, "rep-ada", 0))
    assert await fire(storage, 31) == 2  # accept breached at 10, disposition warned at 30
    await deliver(storage, context, assigned(2, "rep-bob", 32))

    after = await timers(storage)
    kept = after["assignment-2/disposition"]
    assert (kept.started_at, kept.warn_at, kept.due_at, kept.next_at) == (
        AT, AT + timedelta(minutes=30), AT + timedelta(minutes=60), AT + timedelta(minutes=60))  # fmt: skip
    assert (kept.status, kept.warned_at, kept.rep_id) == (SlaState.WARNING, AT + timedelta(minutes=31), "rep-bob")
    assert after["assignment-1/disposition"].status == REPLACED
    # A breached obligation restarts, else a breach-triggered reassignment would breach again at once.
    restarted = after["assignment-2/accept"]
    assert (restarted.started_at, restarted.due_at) == (AT + timedelta(minutes=32), AT + timedelta(minutes=42))
    assert after["assignment-1/accept"].status == SlaState.BREACHED
    assert await fire(storage, 40) == 1  # only accept's warning (37): the kept one is not sent again
    assert len(await published(storage, "sla.warning")) == 2


async def test_keep_on_a_breached_obligation_restarts_it(storage: Storage) -> None:
    context = context_with(POLICIES["signed"])
    await deliver(storage, context, assigned(1, "rep-ada", 0))
    assert await fire(storage, 61) == 2  # both breached, no warning first
    assert len(await published(storage, "sla.warning")) == 0
    await deliver(storage, context, assigned(2, "rep-bob", 62))

    disposition = (await timers(storage))["assignment-2/disposition"]
    assert (disposition.started_at, disposition.due_at, disposition.status) == (
        AT + timedelta(minutes=62), AT + timedelta(minutes=122), SlaState.RUNNING)  # fmt: skip


async def test_a_redelivered_older_reassignment_closes_nothing_newer(storage: Storage) -> None:
    context = context_with(None)
    await deliver(storage, context, assigned(1, "rep-ada", 0), assigned(2, "rep-bob", 6), assigned(3, "rep-cy", 12))
    await deliver(storage, context, assigned(2, "rep-bob", 6))

    assert await statuses(storage) == {
        "assignment-1/first_response": REPLACED,
        "assignment-2/first_response": REPLACED,
        "assignment-3/first_response": SlaState.RUNNING,
    }
    assert len(await published(storage, "sla.cancelled")) == 2


async def test_a_reassignment_to_a_queue_replaces_the_older_timers_and_starts_none(storage: Storage) -> None:
    context = context_with(POLICIES["signed"])
    await deliver(storage, context, assigned(1, "rep-ada", 0))
    for _ in range(2):  # and again, redelivered
        async with storage.sessions() as session:
            await on_lead_queued([queued(2, 3)], session, context=context)
            await session.commit()

    assert await statuses(storage) == {"assignment-1/accept": REPLACED, "assignment-1/disposition": REPLACED}
    assert len(await published(storage, "sla.cancelled")) == 2


async def test_a_breach_carries_the_obligations_escalation(storage: Storage) -> None:
    await deliver(storage, context_with(POLICIES["signed"]), assigned(1, "rep-ada", 0))
    assert await fire(storage, 60) == 2
    breaches = [b for b in await published(storage, "sla.breached") if isinstance(b, SlaBreached)]
    assert sorted((b.obligation, b.escalation, b.elapsed_seconds) for b in breaches) == [
        ("accept", [EscalationStep.REMIND, EscalationStep.REASSIGN], 3600.0),
        ("disposition", [EscalationStep.NOTIFY_MANAGER], 3600.0),
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
