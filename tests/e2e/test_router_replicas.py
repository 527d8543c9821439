"""Two router processes on one PostgreSQL database share a team fairly: every lead once, no rep skipped."""

import asyncio
import json
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from leadrelay.agreements import service as agreements
from leadrelay.apikeys import ApiKey, Team
from leadrelay.broker import EmbeddedBroker
from leadrelay.db import create_engine
from leadrelay.events import LeadReceived, LeadScored, ScoreTrigger, Topic, new_event
from leadrelay.stages import LeadStage
from leadrelay.testing import (
    DEV_API_KEY,
    ServiceProcess,
    free_port,
    metric_value,
    migrated,
    migrations_of,
    produce,
    read_topic,
    wait_until,
)
from router.config import RouterSettings
from router.reps import service as reps
from router.reps.crypto import channel_box
from router.reps.schemas import RepPut
from router.rules.document import ROUTING, RoutingDocument
from router.teams import service as teams
from router.teams.schemas import TeamPut

pytestmark = pytest.mark.postgres

DatabaseFactory = Callable[[str, str], Awaitable[str]]

LEADS = 400
REPS = 4
AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
ALL_DAY = [{"start": "00:00", "end": "24:00"}]
RULES = {
    "rules": [
        {
            "name": "everyone",
            "when": "always",
            "action": {"type": "team", "team": "pool", "strategy": "weighted_round_robin"},
            "otherwise": {"type": "queue", "team": "pool"},
        }
    ]
}


def _key(key_id: str, team: Team) -> ApiKey:
    return ApiKey(id=key_id, name=key_id, team=team, scopes=[], key_hash=key_id)


async def _configure(database_url: str) -> None:
    """Migrate, then store a team of REPS equal reps and the active ruleset routing every lead to it."""
    async with migrated(database_url, migrations_of("router")) as storage:
        async with storage.sessions() as session:
            week = dict.fromkeys(("mon", "tue", "wed", "thu", "fri", "sat", "sun"), ALL_DAY)
            team_in = TeamPut.model_validate({"name": "Pool", "timezone": "UTC", "working_hours": week})
            await teams.put(session=session, team_id="pool", team_in=team_in, actor=None)
        box = channel_box(RouterSettings().secret_key.get_secret_value())
        for number in range(REPS):
            async with storage.sessions() as session:
                rep_in = RepPut(name=f"Rep {number}", teams=["pool"])
                await reps.put(session=session, rep_id=f"rep-{number}", rep_in=rep_in, box=box, actor=None)
        async with storage.sessions() as session:
            document = RoutingDocument.model_validate(RULES)
            drafted = await agreements.draft(session, kind=ROUTING, document=document, note="e2e",
                                             actor=_key("author", Team.OPS))  # fmt: skip
        async with storage.sessions() as session:
            await agreements.approve(session, kind=ROUTING, version=drafted.version.version,
                                     actor=_key("approver", Team.SALES))  # fmt: skip


def _scored(number: int) -> tuple[str, bytes]:
    lead_id = f"00000000-0000-4000-8000-{number:012d}"
    lead = LeadReceived(lead_id=lead_id, email=f"lead{number}@example.com", source="api", received_at=AT)
    scored = LeadScored(lead_id=lead_id, score=60, stage=LeadStage.MQL, icp_version="1", explanation=[],
                        scored_at=AT, lead=lead, trigger=ScoreTrigger.RECEIVED, mql=True)  # fmt: skip
    return lead_id, new_event(scored, source="leadrelay/scoring").to_bytes()


def _assigned_scored_partitions(router: ServiceProcess) -> bool:
    """Whether the router's log says it was given partitions of leads.scored (it logs every assignment)."""
    if not router.log_path.exists():
        return False
    return any(
        "partitions assigned" in line and f"{Topic.LEADS_SCORED}:" in line
        for line in router.log_path.read_text(errors="replace").splitlines()
    )


async def _rows(database_url: str, query: str) -> list[tuple[object, ...]]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            return [tuple(row) for row in (await connection.execute(text(query))).all()]
    finally:
        await engine.dispose()


async def test_two_router_processes_assign_every_lead_once_and_share_the_team_evenly(
    broker: EmbeddedBroker, make_database: DatabaseFactory, tmp_path: Path
) -> None:
    database_url = await make_database("postgres", "router")
    await _configure(database_url)
    env = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers, "DATABASE_URL": database_url,
           "LEADRELAY_DEV_API_KEY": DEV_API_KEY}  # fmt: skip
    routers = [ServiceProcess("router", port=free_port(), workdir=tmp_path, name=f"router-{n}", env=env)
               for n in (1, 2)]  # fmt: skip
    for router in routers:
        router.start()
    try:
        await asyncio.gather(*(router.wait_healthy(timeout=120) for router in routers))

        async def both_consume() -> bool:
            return all(_assigned_scored_partitions(router) for router in routers)

        # The second member's join moves partitions to it: produce once both read leads.scored.
        await wait_until(both_consume, timeout=120, what="both routers to own leads.scored partitions")
        records = [_scored(number) for number in range(LEADS)]
        await produce(broker.bootstrap_servers, Topic.LEADS_SCORED, records)
        count = "SELECT count(*) FROM assignment"

        async def all_assigned() -> bool:
            [(assigned,)] = await _rows(database_url, count)
            return assigned == LEADS

        await wait_until(all_assigned, timeout=300, what=f"{LEADS} assignments")

        per_lead = await _rows(database_url, "SELECT lead_id, sequence, outcome, rep_id FROM assignment")
        assert sorted(str(lead_id) for lead_id, *_ in per_lead) == sorted(lead_id for lead_id, _ in records)
        assert {(sequence, outcome) for _, sequence, outcome, _ in per_lead} == {(1, "assigned")}
        given = Counter(str(rep_id) for *_, rep_id in per_lead)
        assert set(given) == {f"rep-{number}" for number in range(REPS)}
        assert max(given.values()) - min(given.values()) <= 2, given  # each N/k +- 1
        assert all(abs(leads - LEADS / REPS) <= 1 for leads in given.values()), given
        loads = await _rows(database_url, "SELECT rep_id, sum(assigned) FROM rep_load GROUP BY rep_id")
        assert {str(rep_id): int(str(total)) for rep_id, total in loads} == dict(given)

        announced = await read_topic(broker.bootstrap_servers, Topic.LEADS_ASSIGNED, min_count=LEADS, timeout=120)
        assignment_ids: dict[str, set[str]] = defaultdict(set)
        for record in announced:
            event = json.loads(record.value)
            if event["type"] == "lead.assigned":
                assignment_ids[event["data"]["lead_id"]].add(event["data"]["assignment_id"])
        # A lead announced twice (a batch re-delivered across a rebalance) names the same assignment.
        assert len(assignment_ids) == LEADS
        assert all(len(ids) == 1 for ids in assignment_ids.values())

        counted = [await metric_value(router.url, "leadrelay_assignments_total") for router in routers]
        assert sum(counted) == LEADS, counted  # each decision counted once, by the replica that committed it
        assert all(counted), counted  # both replicas decided: the rotation's fairness held across them
    finally:
        await asyncio.gather(*(router.stop() for router in routers))
