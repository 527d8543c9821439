"""SLA timers on SQLite and PostgreSQL: started per obligation of the policy in force on the team's clock, once however
often announced; met in time, late responses recorded, cancelled when the lead leaves the stages; event ids fixed."""

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from leadrelay.agreements import service as agreements
from leadrelay.apikeys import ApiKey, Team
from leadrelay.events import (
    CloudEvent,
    EventData,
    LeadActivity,
    LeadAssigned,
    SlaClock,
    SlaMet,
    SlaStarted,
    new_event,
    parse_event,
)
from leadrelay.outbox import OutboxMessage
from leadrelay.stages import ActivityType, LeadStage, SlaState
from leadrelay.testing import Storage, migrated, migrations_of, wait_until
from sla_monitor.clocks.models import TeamCalendarRecord
from sla_monitor.config import SlaMonitorSettings
from sla_monitor.context import SlaContext
from sla_monitor.policy.document import SLA, SlaDocument
from sla_monitor.policy.service import CompiledPolicy, Policies
from sla_monitor.timers import service
from sla_monitor.timers.handlers import calendars, on_lead_activity, on_lead_assigned
from sla_monitor.timers.models import SlaTimer

# A Friday, one hour before the EMEA team (09:00-17:00 UTC, Monday to Friday) closes for the weekend.
AT = datetime(2026, 11, 27, 16, 0, tzinfo=UTC)
WEEKDAY = [{"start": "09:00", "end": "17:00"}]
POLICY: dict[str, Any] = {
    "hours_per_business_day": 8,
    "obligations": [
        {
            "name": "accept",
            "met_by": ["accepted", "rejected"],
            "clock": "wall",
            "targets": [{"when": {"sources": ["webinar"]}, "within": "30m"}, {"within": "10m"}],
            "warn_at": 0.5,
            "escalation": ["remind", "reassign"],
            "on_reassignment": "restart",
            "stages": ["lead", "mql"],
        },
        {
            "name": "first_touch",
            "met_by": ["contacted"],
            "clock": "business",
            "targets": [{"when": {"grades": ["A"]}, "within": "1h"}, {"when": {"teams": ["emea"]}, "within": "2h"}],
            "warn_at": 0.8,
            "escalation": ["notify_manager"],
            "on_reassignment": "keep",
            "stages": ["lead", "mql", "sal"],
        },
    ],
}


def context_with(policy: CompiledPolicy | None = None) -> SlaContext:
    """A context on default settings; `policy` in force instead of the built-in one if given."""
    context = SlaContext.of(SlaMonitorSettings(_env_file=None))  # type: ignore[call-arg]
    if policy is not None:
        context.policies = Policies(builtin=policy)
    return context


COMPILED = CompiledPolicy(version="7", document=SlaDocument.model_validate(POLICY))


def assigned(lead_id: str, *, grade: str | None = "A2", source: str | None = "api", team_id: str | None = "emea",
             minutes: float = 0, sequence: int = 1) -> CloudEvent[LeadAssigned]:  # fmt: skip
    data = LeadAssigned(
        lead_id=lead_id,
        assignment_id=f"{lead_id}-assignment-{sequence}",
        rep_id=f"rep-{sequence}",
        team_id=team_id,
        rule_path=["r"],
        candidates=["rep"],
        routing_version="1",
        assigned_at=AT + timedelta(minutes=minutes),
        sequence=sequence,
        grade=grade,
        source=source,
    )
    return new_event(data, source="leadrelay/router")


def activity(
    lead_id: str, kind: ActivityType, *, minutes: float, stage: LeadStage | None = None
) -> CloudEvent[LeadActivity]:
    at = AT + timedelta(minutes=minutes)
    data = LeadActivity(lead_id=lead_id, rep_id="rep-1", activity=kind, occurred_at=at, stage=stage)
    return new_event(data, source="leadrelay/intake")


@pytest.fixture
async def storage(database_url: str) -> AsyncIterator[Storage]:
    async with migrated(database_url, migrations_of("sla_monitor")) as storage:
        async with storage.sessions() as session:
            session.add(
                TeamCalendarRecord(
                    team_id="emea",
                    version=1,
                    timezone="UTC",
                    changed_at=AT,
                    working_hours=dict.fromkeys(("mon", "tue", "wed", "thu", "fri"), WEEKDAY),
                )
            )
            await session.commit()
        yield storage


async def deliver(storage: Storage, context: SlaContext, *events: CloudEvent[Any]) -> None:
    """Hand a run of events to the handler of their type, as the consumer does, and commit."""
    async with storage.sessions() as session:
        if isinstance(events[0].data, LeadAssigned):
            await on_lead_assigned(list(events), session, context=context)
        else:
            await on_lead_activity(list(events), session, context=context)
        await session.commit()


async def timers(storage: Storage) -> dict[str, SlaTimer]:
    async with storage.sessions() as session:
        rows = (await session.exec(select(SlaTimer).order_by(col(SlaTimer.sequence)))).all()
    return {f"{row.lead_id}/{row.obligation}": row for row in rows}


async def published(storage: Storage, event_type: str | None = None) -> list[CloudEvent[EventData]]:
    async with storage.sessions() as session:
        rows = (await session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id)))).all()
    events = [parse_event(row.payload) for row in rows]
    return [event for event in events if event_type is None or event.type == event_type]


def sample(context: SlaContext, name: str, **labels: str) -> float:
    return context.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_obligations_start_by_grade_source_and_team_on_the_teams_clock(storage: Storage) -> None:
    context = context_with(COMPILED)
    await deliver(
        storage,
        context,
        assigned("a-lead", grade="A2"),
        assigned("webinar-lead", grade="B1", source="webinar"),
        assigned("outsider", grade="C", team_id="apac"),
    )

    started = await timers(storage)
    assert set(started) == {"a-lead/accept", "a-lead/first_touch", "webinar-lead/accept",
                            "webinar-lead/first_touch", "outsider/accept"}  # fmt: skip
    # Wall clock: 10 minutes, 30 for webinar leads; warned halfway.
    assert (started["a-lead/accept"].due_at, started["a-lead/accept"].warn_at) == (
        AT + timedelta(minutes=10),
        AT + timedelta(minutes=5),
    )
    assert started["webinar-lead/accept"].due_at == AT + timedelta(minutes=30)
    # Business clock: 1 business hour from Friday 16:00 ends at closing time, 17:00.
    a_touch = started["a-lead/first_touch"]
    assert (a_touch.clock, a_touch.due_at, a_touch.warn_at) == (SlaClock.BUSINESS, AT + timedelta(hours=1),
                                                                AT + timedelta(minutes=48))  # fmt: skip
    b_touch = started["webinar-lead/first_touch"]  # grade B in team emea: 2 business hours cross the weekend
    assert b_touch.due_at == datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    assert b_touch.warn_at == datetime(2026, 11, 30, 9, 36, tzinfo=UTC)
    assert b_touch.next_at == b_touch.warn_at
    assert (b_touch.met_by, b_touch.stages, b_touch.escalation) == (["contacted"], ["lead", "mql", "sal"],
                                                                    ["notify_manager"])  # fmt: skip
    assert {(t.grade, t.source, t.team_id, t.policy_version, t.status) for t in started.values()} >= {
        ("B1", "webinar", "emea", "7", SlaState.RUNNING)
    }

    events = await published(storage, "sla.started")
    assert len(events) == 5
    first = next(e.data for e in events if isinstance(e.data, SlaStarted) and e.data.lead_id == "webinar-lead"
                 and e.data.obligation == "first_touch")  # fmt: skip
    assert (first.within_seconds, first.warn_at, first.due_at, first.clock) == (
        7200.0,
        b_touch.warn_at,
        b_touch.due_at,
        SlaClock.BUSINESS,
    )
    assert sample(context, "leadrelay_sla_started_total", team="none", obligation="accept", grade="none") == 0
    assert sample(context, "leadrelay_sla_started_total", team="apac", obligation="accept", grade="C") == 1


async def test_the_signed_policy_in_force_when_handled_decides_the_obligations(storage: Storage) -> None:
    context = context_with()  # the built-in policy until marketing and sales sign one
    await deliver(storage, context, assigned("before"))
    async with storage.sessions() as session:
        author = ApiKey(id="author", name="author", team=Team.OPS, scopes=[], key_hash="author")
        drafted = await agreements.draft(session, kind=SLA, document=SlaDocument.model_validate(POLICY), note="t",
                                         actor=author)  # fmt: skip
    for team in (Team.MARKETING, Team.SALES):
        async with storage.sessions() as session:
            approver = ApiKey(id=f"{team}-key", name="approver", team=team, scopes=[], key_hash=f"{team}-key")
            await agreements.approve(session, kind=SLA, version=drafted.version.version, actor=approver)
    await deliver(storage, context, assigned("after"))

    started = await timers(storage)
    assert {key: timer.policy_version for key, timer in started.items()} == {
        "before/first_response": "builtin",
        "after/accept": str(drafted.version.version),
        "after/first_touch": str(drafted.version.version),
    }
    assert started["before/first_response"].due_at == AT + timedelta(seconds=300)


async def test_an_assignment_seen_again_starts_nothing_and_announces_its_obligations_again_under_their_ids(
    storage: Storage,
) -> None:
    context = context_with(COMPILED)
    await deliver(storage, context, assigned("lead-1"), assigned("lead-1"))
    first = await published(storage)
    # The router announces an assignment again after a re-drive: its sla.started may have been lost.
    await deliver(storage, context, assigned("lead-1"))

    started = await timers(storage)
    assert len(started) == 2
    ids = sorted(service.event_id(timer.id, "started") for timer in started.values())
    assert sorted(event.id for event in first) == ids
    again = (await published(storage))[len(first) :]
    assert sorted(event.id for event in again) == ids
    assert {event.id: event.data for event in again} == {event.id: event.data for event in first}
    assert service.event_id("t", "started") == service.event_id("t", "started") != service.event_id("t", "met")
    assert sample(context, "leadrelay_sla_started_total", team="emea", obligation="accept", grade="A2") == 1


async def test_an_activity_in_time_meets_the_obligations_it_names(storage: Storage) -> None:
    context = context_with(COMPILED)
    await deliver(storage, context, assigned("lead-1"))
    await deliver(storage, context, activity("lead-1", ActivityType.ACCEPTED, minutes=4, stage=LeadStage.SAL))

    after = await timers(storage)
    accept, touch = after["lead-1/accept"], after["lead-1/first_touch"]
    assert (accept.status, accept.closed_at, accept.responded_at, accept.next_at) == (
        SlaState.MET, AT + timedelta(minutes=4), AT + timedelta(minutes=4), None)  # fmt: skip
    assert (accept.response_seconds, accept.response_business_seconds) == (240.0, 240.0)
    assert touch.status == SlaState.RUNNING  # sal is one of its stages; accepted does not meet it
    met = [event for event in await published(storage, "sla.met")]
    assert len(met) == 1
    assert met[0].id == service.event_id(accept.id, "met")
    assert isinstance(met[0].data, SlaMet)
    assert met[0].data.activity == ActivityType.ACCEPTED
    assert met[0].data.elapsed_seconds == 240.0
    assert sample(context, "leadrelay_sla_met_total", team="emea", obligation="accept", grade="A2") == 1
    assert sample(context, "leadrelay_sla_response_seconds_count", team="emea", obligation="accept") == 1


async def test_a_late_response_is_recorded_without_meeting(storage: Storage) -> None:
    context = context_with(COMPILED)
    await deliver(storage, context, assigned("open-late"), assigned("breached"))
    async with storage.sessions() as session:
        fired = await service.fire_due(session=session, now=AT + timedelta(minutes=10), limit=100,
                                       calendar_of=calendars(context, session), changes=service.Changes())  # fmt: skip
        await session.commit()
    assert fired == 2  # both accepts breached; the first touches warn at 16:48

    await deliver(storage, context, activity("open-late", ActivityType.REJECTED, minutes=12),
                  activity("breached", ActivityType.ACCEPTED, minutes=15))  # fmt: skip

    after = await timers(storage)
    for lead_id, minutes in (("open-late", 12), ("breached", 15)):
        accept = after[f"{lead_id}/accept"]
        assert (accept.status, accept.responded_at, accept.response_seconds) == (
            SlaState.BREACHED, AT + timedelta(minutes=minutes), minutes * 60.0)  # fmt: skip
    assert await published(storage, "sla.met") == []
    assert sample(context, "leadrelay_sla_response_seconds_count", team="emea", obligation="accept") == 2


async def test_an_open_timer_answered_after_its_deadline_stays_for_the_job_to_breach(storage: Storage) -> None:
    context = context_with(COMPILED)
    await deliver(storage, context, assigned("lead-1"))
    await deliver(storage, context, activity("lead-1", ActivityType.ACCEPTED, minutes=11))

    accept = (await timers(storage))["lead-1/accept"]
    assert (accept.status, accept.responded_at, accept.next_at) == (
        SlaState.RUNNING, AT + timedelta(minutes=11), AT + timedelta(minutes=5))  # fmt: skip
    assert await published(storage, "sla.met") == []


async def test_leaving_the_stages_cancels_what_is_still_open(storage: Storage) -> None:
    context = context_with(COMPILED)
    await deliver(storage, context, assigned("lead-1"))
    # Rejected meets accept in time and moves the lead out of first_touch's stages.
    await deliver(storage, context, activity("lead-1", ActivityType.REJECTED, minutes=2, stage=LeadStage.REJECTED))

    after = await timers(storage)
    assert after["lead-1/accept"].status == SlaState.MET
    touch = after["lead-1/first_touch"]
    assert (touch.status, touch.close_reason, touch.closed_at, touch.next_at, touch.responded_at) == (
        SlaState.CANCELLED, "stage_left", AT + timedelta(minutes=2), None, None)  # fmt: skip
    cancelled = await published(storage, "sla.cancelled")
    assert [(e.id, getattr(e.data, "reason", None)) for e in cancelled] == [
        (service.event_id(touch.id, "cancelled"), "stage_left")
    ]
    assert sample(context, "leadrelay_sla_cancelled_total", obligation="first_touch", reason="stage_left") == 1


async def test_duplicate_activities_and_engagement_change_nothing(storage: Storage) -> None:
    context = context_with(COMPILED)
    await deliver(storage, context, assigned("lead-1"))
    await deliver(storage, context, activity("lead-1", ActivityType.WEBINAR_ATTENDED, minutes=1, stage=LeadStage.SQL))
    assert {timer.status for timer in (await timers(storage)).values()} == {SlaState.RUNNING}

    contacted = activity("lead-1", ActivityType.CONTACTED, minutes=3)
    await deliver(storage, context, contacted, contacted)
    before = {key: timer.model_dump() for key, timer in (await timers(storage)).items()}
    outbox = [event.id for event in await published(storage)]
    await deliver(storage, context, contacted)
    await deliver(storage, context, activity("lead-1", ActivityType.CONTACTED, minutes=4))

    assert {key: timer.model_dump() for key, timer in (await timers(storage)).items()} == before
    assert before["lead-1/first_touch"]["status"] == SlaState.MET
    assert before["lead-1/accept"]["status"] == SlaState.RUNNING
    assert [event.id for event in await published(storage)] == outbox
    assert sample(context, "leadrelay_sla_met_total", team="emea", obligation="first_touch", grade="A2") == 1


BLOCKED_SESSIONS = text(
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


async def _someone_waits_on_a_lock(engine: AsyncEngine) -> bool:
    async with engine.connect() as connection:
        return bool((await connection.execute(BLOCKED_SESSIONS)).scalar())


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_replicas_starting_the_same_assignment_agree_on_one_timer_each(storage: Storage) -> None:
    contexts = context_with(COMPILED), context_with(COMPILED)
    first_inserted = asyncio.Event()

    async def replica(context: SlaContext, delay_commit: bool) -> None:
        async with storage.sessions() as session:
            if not delay_commit:
                await first_inserted.wait()  # look before the other replica commits its insert
            await on_lead_assigned([assigned("lead-1")], session, context=context)
            if delay_commit:
                first_inserted.set()
                # Commit only once the other replica's insert waits on our uncommitted rows.
                await wait_until(lambda: _someone_waits_on_a_lock(storage.engine), timeout=10, what="a blocked insert")
            await session.commit()

    await asyncio.gather(replica(contexts[0], True), replica(contexts[1], False))

    started = await timers(storage)
    assert len(started) == 2
    # The replica that found them started announces them again under the same ids.
    assert Counter(event.id for event in await published(storage)) == {
        service.event_id(timer.id, "started"): 2 for timer in started.values()
    }


async def test_an_activity_redelivered_after_a_reassignment_changes_nothing_of_the_new_timers(storage: Storage) -> None:
    context = context_with(COMPILED)
    await deliver(storage, context, assigned("lead-1"))
    accepted = activity("lead-1", ActivityType.ACCEPTED, minutes=2)
    await deliver(storage, context, accepted)
    await deliver(storage, context, assigned("lead-1", minutes=5, sequence=2))  # accept restarts for the new rep
    outbox = [event.id for event in await published(storage)]
    await deliver(storage, context, accepted)

    after = await timers(storage)
    assert {(key, timer.sequence): timer.status for key, timer in after.items()} == {
        ("lead-1/accept", 2): SlaState.RUNNING,
        ("lead-1/first_touch", 2): SlaState.RUNNING,
    }
    assert after["lead-1/accept"].responded_at is None
    assert [event.id for event in await published(storage)] == outbox


async def test_a_run_mixing_started_and_new_assignments_starts_only_the_new_obligations(storage: Storage) -> None:
    context = context_with(COMPILED)
    await deliver(storage, context, assigned("known"))
    before = await timers(storage)
    # The known assignment again (a new event id, as after a re-drive) between two new leads, one of them twice.
    await deliver(storage, context, assigned("new-1"), assigned("known"), assigned("new-2", grade="C", team_id="apac"),
                  assigned("new-1"))  # fmt: skip

    after = await timers(storage)
    assert set(after) == {"known/accept", "known/first_touch", "new-1/accept", "new-1/first_touch", "new-2/accept"}
    assert {key: after[key].id for key in before} == {key: timer.id for key, timer in before.items()}
    started = await published(storage, "sla.started")
    assert {event.id for event in started} == {service.event_id(timer.id, "started") for timer in after.values()}
    # In the run's order: each new assignment's obligations as the policy lists them, then the known
    # assignment's announced again under their first ids.
    assert [(e.data.lead_id, getattr(e.data, "obligation", None)) for e in started[2:]] == [
        ("new-1", "accept"), ("new-1", "first_touch"), ("new-2", "accept"),
        ("known", "accept"), ("known", "first_touch")]  # fmt: skip
    assert [event.id for event in started[5:]] == [event.id for event in started[:2]]
    assert sample(context, "leadrelay_sla_started_total", team="emea", obligation="accept", grade="A2") == 2
    assert sample(context, "leadrelay_sla_started_total", team="apac", obligation="accept", grade="C") == 1


async def test_a_run_of_activities_of_several_leads_answers_each_lead_in_order(storage: Storage) -> None:
    context = context_with(COMPILED)
    await deliver(storage, context, assigned("lead-1"), assigned("lead-2"), assigned("quiet"))
    await deliver(
        storage,
        context,
        activity("lead-1", ActivityType.ACCEPTED, minutes=1, stage=LeadStage.SAL),
        activity("lead-2", ActivityType.WEBINAR_ATTENDED, minutes=1, stage=LeadStage.SQL),
        activity("lead-2", ActivityType.REJECTED, minutes=2, stage=LeadStage.REJECTED),
        activity("lead-1", ActivityType.ACCEPTED, minutes=3),  # met already: changes nothing
        activity("lead-1", ActivityType.CONTACTED, minutes=4),
        activity("lead-2", ActivityType.CONTACTED, minutes=5),  # its first touch was cancelled: changes nothing
    )

    after = await timers(storage)
    assert {key: (timer.status, timer.responded_at) for key, timer in after.items()} == {
        "lead-1/accept": (SlaState.MET, AT + timedelta(minutes=1)),
        "lead-1/first_touch": (SlaState.MET, AT + timedelta(minutes=4)),
        "lead-2/accept": (SlaState.MET, AT + timedelta(minutes=2)),
        "lead-2/first_touch": (SlaState.CANCELLED, None),
        "quiet/accept": (SlaState.RUNNING, None),
        "quiet/first_touch": (SlaState.RUNNING, None),
    }
    closed = [(event.type, event.id) for event in await published(storage) if event.type != "sla.started"]
    assert closed == [
        ("sla.met", service.event_id(after["lead-1/accept"].id, "met")),
        ("sla.met", service.event_id(after["lead-2/accept"].id, "met")),
        ("sla.cancelled", service.event_id(after["lead-2/first_touch"].id, "cancelled")),
        ("sla.met", service.event_id(after["lead-1/first_touch"].id, "met")),
    ]
    assert sample(context, "leadrelay_sla_response_seconds_count", team="emea", obligation="accept") == 2
