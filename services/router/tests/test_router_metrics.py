"""Router's metrics on SQLite and PostgreSQL: counted once committed, bounded labels, queue depth kept fresh."""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

from prometheus_client import CollectorRegistry, generate_latest

from leadrelay.events import AssignmentTrigger, CloudEvent, LeadReceived, LeadScored, ScoreTrigger, new_event
from leadrelay.runtime import ServiceRuntime
from leadrelay.stages import LeadStage
from leadrelay.testing import Storage, migrated, migrations_of, wait_until
from router.assignments.handlers import on_lead_scored
from router.assignments.models import Assignment, Outcome
from router.config import RouterSettings
from router.context import RouterContext
from router.defaults import seed_defaults
from router.main import create_app
from router.metrics import RouterMetrics, queue_depth, queue_depth_job
from router.reps import service as reps

AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
ROUTED = {"team": "default", "rule": "default", "trigger": "routed"}


def _scored(lead_id: str) -> CloudEvent[LeadScored]:
    lead = LeadReceived(lead_id=lead_id, email=f"{lead_id}@example.com", source="api", received_at=AT)
    scored = LeadScored(lead_id=lead_id, score=60, stage=LeadStage.MQL, icp_version="1", explanation=[],
                        scored_at=AT, lead=lead, trigger=ScoreTrigger.RECEIVED)  # fmt: skip
    return new_event(scored, source="leadrelay/scoring")


def _runtime(storage: Storage, settings: RouterSettings) -> ServiceRuntime[RouterSettings]:
    return cast(ServiceRuntime[RouterSettings], SimpleNamespace(settings=settings, sessions=storage.sessions))


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def _deliver(storage: Storage, context: RouterContext, *lead_ids: str, commit: bool = True) -> None:
    async with storage.sessions() as session:
        await on_lead_scored([_scored(lead_id) for lead_id in lead_ids], session, context=context)
        if commit:
            await session.commit()
        else:
            await session.rollback()


async def _set_default_rep(storage: Storage, *, available: bool) -> None:
    async with storage.sessions() as session:
        rep = await reps.get(session=session, rep_id="rep-default")
        assert rep is not None
        await reps.set_availability(session=session, rep=rep, available=available, actor=None)


async def test_decisions_are_counted_once_committed_by_team_rule_outcome_and_trigger(database_url: str) -> None:
    settings = RouterSettings(database_url=database_url)
    registry = CollectorRegistry()
    context = RouterContext.of(settings, registry)
    async with migrated(database_url, migrations_of("router")) as storage:
        await seed_defaults(_runtime(storage, settings))

        await _deliver(storage, context, "lead-1", "lead-2", "lead-1")
        await _deliver(storage, context, "lead-3", commit=False)  # rolled back: nothing counted
        await _deliver(storage, context, "lead-1", "lead-2")  # already assigned: nothing new
        await _set_default_rep(storage, available=False)
        await _deliver(storage, context, "lead-4", "lead-5")  # the rep is toggled off: the default queue

        assert _value(registry, "leadrelay_assignments_total", outcome="assigned", **ROUTED) == 2
        assert _value(registry, "leadrelay_assignments_total", outcome="queued", **ROUTED) == 2
        assert _value(registry, "leadrelay_routing_decision_seconds_count") == 4
        assert 0 < _value(registry, "leadrelay_routing_decision_seconds_sum") < 4
        assert _value(registry, "leadrelay_rep_unavailable_total", reason="toggled_off") == 2
        assert _value(registry, "leadrelay_routing_decision_seconds_bucket", le="+Inf") == 4


async def test_no_rep_in_any_label_and_the_metrics_are_in_the_apps_registry(database_url: str) -> None:
    settings = RouterSettings(database_url=database_url)
    registry = CollectorRegistry()
    create_app(settings, registry)
    context = RouterContext.of(settings)
    async with migrated(database_url, migrations_of("router")) as storage:
        await seed_defaults(_runtime(storage, settings))
        await _deliver(storage, context, "lead-1")

    exposed = generate_latest(registry).decode()
    for name in ("leadrelay_assignments_total", "leadrelay_routing_queue_depth", "leadrelay_routing_decision_seconds",
                 "leadrelay_rep_unavailable_total"):  # fmt: skip
        assert f"# TYPE {name}" in exposed
    labels = [
        (name, value)
        for family in context.metrics.registry.collect()
        for sample in family.samples
        for name, value in sample.labels.items()
    ]
    assert ("team", "default") in labels
    assert {name for name, _ in labels} <= {"team", "rule", "outcome", "trigger", "reason", "le"}
    assert not [value for _, value in labels if "rep-default" in value or "@" in value]


def _assignment(lead_id: str, sequence: int, outcome: Outcome, team_id: str) -> Assignment:
    return Assignment(lead_id=lead_id, sequence=sequence, outcome=outcome, team_id=team_id, routing_version="1",
                      trigger=AssignmentTrigger.ROUTED if sequence == 1 else AssignmentTrigger.SLA_BREACH,
                      rep_id=None if outcome == Outcome.QUEUED else "rep-x")  # fmt: skip


async def test_queue_depth_counts_leads_whose_current_assignment_is_queued(database_url: str) -> None:
    async with migrated(database_url, migrations_of("router")) as storage, storage.sessions() as session:
        session.add_all(
            [
                _assignment("lead-1", 1, Outcome.QUEUED, "emea"),
                _assignment("lead-2", 1, Outcome.QUEUED, "emea"),
                _assignment("lead-3", 1, Outcome.QUEUED, "na"),
                _assignment("lead-3", 2, Outcome.ASSIGNED, "na"),  # picked up: no longer queued
                _assignment("lead-4", 1, Outcome.ASSIGNED, "na"),
                _assignment("lead-4", 2, Outcome.QUEUED, "na"),  # reassigned into the queue
                _assignment("lead-5", 1, Outcome.NURTURED, "na"),
            ]
        )
        await session.commit()
        assert await queue_depth(session) == {"emea": 2, "na": 1}


async def test_the_queue_depth_job_refreshes_the_gauge_and_zeroes_emptied_queues(database_url: str) -> None:
    settings = RouterSettings(database_url=database_url, routing_queue_depth_interval_seconds=0.05)
    metrics = RouterMetrics(CollectorRegistry())

    def depth_is(team: str, leads: float) -> Callable[[], Awaitable[bool]]:
        async def probe() -> bool:
            return _value(metrics.registry, "leadrelay_routing_queue_depth", team=team) == leads

        return probe

    async with migrated(database_url, migrations_of("router")) as storage:
        async with storage.sessions() as session:
            session.add_all([_assignment("lead-1", 1, Outcome.QUEUED, "emea"),
                             _assignment("lead-2", 1, Outcome.QUEUED, "emea")])  # fmt: skip
            await session.commit()
        job = asyncio.ensure_future(queue_depth_job(metrics)(_runtime(storage, settings)))
        try:
            await wait_until(depth_is("emea", 2), timeout=10, what="the emea queue at 2")
            async with storage.sessions() as session:
                session.add_all([_assignment("lead-1", 2, Outcome.ASSIGNED, "emea"),
                                 _assignment("lead-2", 2, Outcome.ASSIGNED, "emea")])  # fmt: skip
                await session.commit()
            await wait_until(depth_is("emea", 0), timeout=10, what="the emea queue emptied")
        finally:
            job.cancel()
            await asyncio.gather(job, return_exceptions=True)


def test_a_context_built_without_a_registry_has_metrics_of_its_own() -> None:
    first: Any = RouterContext.of(RouterSettings())
    second: Any = RouterContext.of(RouterSettings())
    assert first.metrics.registry is not second.metrics.registry
