"""Router's own metrics: assignments by team, rule and outcome; queue depth; decision time; reps skipped."""

import asyncio
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import func
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.runtime import ServiceRuntime
from leadrelay.service import Job
from router.assignments.models import Assignment, Outcome
from router.assignments.routing import Routing
from router.config import RouterSettings

NO_TEAM = "none"
"""The team label of a decision that names no team (nurture, or a rep in no team)."""
DECISION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class RouterMetrics:
    """Counters, gauges and histograms of one router process, in the app's registry; never a rep in a label."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.assignments_total = Counter(
            "leadrelay_assignments_total",
            "Routing decisions committed, by team, matched rule, outcome (assigned, queued, nurtured) and trigger.",
            ["team", "rule", "outcome", "trigger"],
            registry=registry,
        )
        self.routing_queue_depth = Gauge(
            "leadrelay_routing_queue_depth",
            "Leads whose current assignment is a team's queue, waiting to be picked up by hand.",
            ["team"],
            registry=registry,
        )
        self.routing_decision_seconds = Histogram(
            "leadrelay_routing_decision_seconds",
            "Time to make one committed routing decision: rule walk, availability and the rotation's pick.",
            buckets=DECISION_BUCKETS,
            registry=registry,
        )
        self.rep_unavailable_total = Counter(
            "leadrelay_rep_unavailable_total",
            "Reps skipped by committed routing decisions, by reason (inactive, out_of_office, daily_cap, ...).",
            ["reason"],
            registry=registry,
        )
        self._queued_teams: set[str] = set()

    def decided(self, routing: Routing, *, trigger: str, seconds: float) -> None:
        """Count one committed routing decision: its outcome, the reps it skipped and the time it took."""
        outcome = "none" if routing.outcome is None else routing.outcome.value
        self.assignments_total.labels(routing.team_id or NO_TEAM, routing.decision.rule, outcome, trigger).inc()
        self.routing_decision_seconds.observe(seconds)
        for step in routing.steps:
            for skipped in step.skipped:
                self.rep_unavailable_total.labels(skipped.reason).inc()

    def reassigned(self, assignment: Assignment) -> None:
        """Count one committed reassignment (by the rules, to a manager, to a queue, or to a rep named by hand)."""
        rule = str(assignment.explanation.get("rule") or "by_hand")
        self.assignments_total.labels(assignment.team_id or NO_TEAM, rule, assignment.outcome, assignment.trigger).inc()

    def queued(self, depth: Mapping[str, int]) -> None:
        """Set every team's queue depth; teams whose queue emptied go back to 0."""
        for team in self._queued_teams - depth.keys():
            self.routing_queue_depth.labels(team).set(0)
        for team, leads in depth.items():
            self.routing_queue_depth.labels(team).set(leads)
        self._queued_teams |= depth.keys()


async def queue_depth(session: AsyncSession) -> dict[str, int]:
    """Team id to the leads whose current (highest-sequence) assignment is that team's queue."""
    later = aliased(Assignment)
    superseded = (
        select(later.id).where(
            col(later.lead_id) == col(Assignment.lead_id), col(later.sequence) > col(Assignment.sequence)
        )
    ).exists()
    query = (
        select(col(Assignment.team_id), func.count())
        .where(col(Assignment.outcome) == Outcome.QUEUED.value, ~superseded)
        .group_by(col(Assignment.team_id))
    )
    return {team or NO_TEAM: count for team, count in (await session.exec(query)).all()}


def queue_depth_job(metrics: RouterMetrics) -> Job[RouterSettings]:
    """The job keeping `leadrelay_routing_queue_depth` fresh (one leader among the replicas reads it)."""

    async def refresh_queue_depth(runtime: ServiceRuntime[RouterSettings]) -> None:
        """Read the queue depth per team every ROUTING_QUEUE_DEPTH_INTERVAL_SECONDS."""
        while True:
            async with runtime.sessions() as session:
                metrics.queued(await queue_depth(session))
            await asyncio.sleep(runtime.settings.routing_queue_depth_interval_seconds)

    return refresh_queue_depth
