"""Assignments on SQLite and PostgreSQL: the rules route, every decision is stored with its why, replicas agree."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from leadrelay.apikeys import Scope, Team
from leadrelay.db import create_engine, create_session_factory, run_migrations
from leadrelay.events import (
    AccountMatch,
    LeadAssigned,
    LeadNurtured,
    LeadQueued,
    LeadReceived,
    LeadScored,
    MatchMethod,
    parse_event,
)
from leadrelay.outbox import OutboxMessage
from leadrelay.problems import install_problem_handlers
from leadrelay.stages import LeadStage
from leadrelay.testing import Storage, migrated, migrations_of, stored_key, wait_until
from router.assignments import service
from router.assignments.models import Assignment, RepLoad
from router.assignments.roster import RosterCache
from router.assignments.router import router as assignments_router
from router.defaults import ensure_defaults
from router.main import MIGRATIONS_DIR
from router.reps import service as reps
from router.reps.crypto import channel_box
from router.reps.schemas import RepPut
from router.rules.document import RoutingDocument
from router.rules.engine import CompiledRules, compile_rules
from router.rules.service import Rulesets
from router.teams import service as teams
from router.teams.schemas import TeamPut

DatabaseFactory = Callable[[str, str], Awaitable[str]]
AT = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)  # a Wednesday, 10:00 UTC
BOX = channel_box("test-secret-key-0123456789")
READER_KEY = "lr_test_reader_0123456789abcdef"
ALL_DAY = [{"start": "00:00", "end": "24:00"}]

RULES = {
    "rules": [
        {"name": "owners", "when": {"field": "account.owner_rep_id", "exists": True},
         "action": {"type": "account_owner"}, "otherwise": {"type": "queue", "team": "team-emea"}},
        {"name": "nurture_weak", "when": {"field": "score.mql", "equals": False},
         "action": {"type": "nurture", "reason": "not an MQL"}},
        {"name": "emea", "when": {"field": "lead.country", "in": ["DE", "GB"]},
         "action": {"type": "team", "team": "team-emea"}, "otherwise": {"type": "queue", "team": "team-emea"}},
        {"name": "everyone_else", "when": "always",
         "action": {"type": "rep", "rep": "rep-off"}, "otherwise": {"type": "queue", "team": "team-emea"}},
    ]
}  # fmt: skip


def scored(lead_id: str, *, country: str = "DE", mql: bool = True, owner: str | None = None) -> LeadScored:
    lead = LeadReceived(
        lead_id=lead_id, email=f"{lead_id}@example.com", source="webinar", received_at=AT, country=country
    )
    account = None
    if owner is not None:
        account = AccountMatch(account_id="acc-1", owner_rep_id=owner, method=MatchMethod.DOMAIN, confidence=1.0)
    return LeadScored(
        lead_id=lead_id,
        score=70,
        stage=LeadStage.MQL if mql else LeadStage.LEAD,
        icp_version="1",
        explanation=[],
        scored_at=AT,
        lead=lead,
        grade="A1" if mql else "C3",
        mql=mql,
        account=account,
    )


async def _staff(storage: Storage) -> None:
    """team-emea (24/7) with rep-ada, rep-bob; rep-off toggled off; the built-in default team and rep."""
    await ensure_defaults(sessions=storage.sessions, default_rep_id="rep-default", box=BOX)
    async with storage.sessions() as session:
        team = TeamPut.model_validate(
            {
                "name": "EMEA",
                "timezone": "Europe/Berlin",
                "working_hours": dict.fromkeys(("mon", "tue", "wed", "thu", "fri", "sat", "sun"), ALL_DAY),
                "manager_rep_id": "rep-ada",
            }
        )
        await teams.put(session=session, team_id="team-emea", team_in=team, actor=None)
    for rep_id, fields in {
        "rep-ada": {"teams": ["team-emea"]},
        "rep-bob": {"teams": ["team-emea"]},
        "rep-off": {"teams": ["team-emea"], "available": False},
    }.items():
        async with storage.sessions() as session:
            await reps.put(session=session, rep_id=rep_id, rep_in=RepPut(name=rep_id, **fields), box=BOX, actor=None)


def _rules() -> CompiledRules:
    return compile_rules(RoutingDocument.model_validate(RULES), version="7")


async def _assign(storage: Storage, leads: list[LeadScored], rules: CompiledRules | None = None) -> list[Any]:
    async with storage.sessions() as session:
        roster = await RosterCache().load(session, at=AT)
        decisions = await service.assign_many(
            session=session, leads=leads, rules=rules or _rules(), roster=roster, at=AT
        )
        await session.commit()
    return decisions


async def test_the_rules_choose_and_every_decision_says_why(database_url: str) -> None:
    async with migrated(database_url, migrations_of("router")) as storage:
        await _staff(storage)
        leads = [
            scored("lead-owned", owner="rep-bob"),
            scored("lead-weak", mql=False),
            scored("lead-de-1"),
            scored("lead-de-2"),
            scored("lead-us", country="US"),
        ]
        decisions = await _assign(storage, leads)
        by_lead = {decision.assignment.lead_id: decision.assignment for decision in decisions}

        assert all(decision.new for decision in decisions)
        owned = by_lead["lead-owned"]
        assert (owned.outcome, owned.rep_id, owned.team_id, owned.rule_path) == (
            "assigned",
            "rep-bob",
            "team-emea",
            ["owners"],
        )
        assert (by_lead["lead-weak"].outcome, by_lead["lead-weak"].reason) == ("nurtured", "not an MQL")
        # Two DE leads in a team of two available reps (rep-off is toggled off): one each, in rotation.
        assert {by_lead["lead-de-1"].rep_id, by_lead["lead-de-2"].rep_id} == {"rep-ada", "rep-bob"}
        emea = by_lead["lead-de-1"].explanation
        assert (emea["version"], emea["rule"]) == ("7", "emea")
        assert [rule["matched"] for rule in emea["evaluated"]] == [False, False, True]
        assert emea["evaluated"][0]["field"] == "account.owner_rep_id"
        [step] = emea["steps"]
        assert step["skipped"] == [{"rep_id": "rep-off", "reason": "toggled_off"}]
        assert {c["rep_id"] for c in step["pick"]["candidates"]} == {"rep-ada", "rep-bob"}
        # The named rep is toggled off: the fallback queue takes the lead, and the explanation shows both steps.
        us = by_lead["lead-us"]
        assert (us.outcome, us.rep_id, us.team_id) == ("queued", None, "team-emea")
        assert [(s["outcome"], s["skipped"]) for s in us.explanation["steps"]] == [
            ("nobody_available", [{"rep_id": "rep-off", "reason": "toggled_off"}]),
            ("queued", []),
        ]
        async with storage.sessions() as session:
            loads = {row.rep_id: row.assigned for row in (await session.exec(select(RepLoad))).all()}
        assert loads == {"rep-bob": 2, "rep-ada": 1}

        # Announcements: the event type follows the outcome, and carries the bounded explanation.
        events = {lead_id: service.announcement(row, None) for lead_id, row in by_lead.items()}
        assert isinstance(events["lead-owned"], LeadAssigned)
        assert isinstance(events["lead-weak"], LeadNurtured)
        assert isinstance(events["lead-us"], LeadQueued)
        assert events["lead-us"].team_id == "team-emea"


async def test_assigning_again_returns_the_existing_assignment(database_url: str) -> None:
    async with migrated(database_url, migrations_of("router")) as storage:
        await _staff(storage)
        [first] = await _assign(storage, [scored("lead-1")])
        [again] = await _assign(storage, [scored("lead-1")])
        assert (first.new, again.new) == (True, False)
        assert again.assignment.id == first.assignment.id


async def test_the_builtin_rules_give_every_lead_to_the_default_rep(database_url: str) -> None:
    async with migrated(database_url, migrations_of("router")) as storage:
        await ensure_defaults(sessions=storage.sessions, default_rep_id="rep-default", box=BOX)
        builtin = Rulesets(default_rep_id="rep-default")
        async with storage.sessions() as session:
            rules = await builtin.active(session)
        [decision] = await _assign(storage, [scored("lead-1")], rules)
        assert (decision.assignment.rep_id, decision.assignment.team_id) == ("rep-default", "default")
        assert decision.assignment.routing_version == "builtin"


BLOCKED_SESSIONS = text(
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


async def _someone_waits_on_a_lock(engine: AsyncEngine) -> bool:
    async with engine.connect() as connection:
        return bool((await connection.execute(BLOCKED_SESSIONS)).scalar())


@pytest.mark.postgres
async def test_racing_replicas_agree_on_one_assignment_and_spend_one_credit(make_database: DatabaseFactory) -> None:
    engine = create_engine(await make_database("postgres", "router"))
    try:
        await run_migrations(engine, MIGRATIONS_DIR)
        sessions = create_session_factory(engine)
        storage = Storage(url="", engine=engine, sessions=sessions)
        await _staff(storage)
        first_inserted = asyncio.Event()

        async def replica(delay_commit: bool) -> str:
            async with sessions() as session:
                if not delay_commit:
                    await first_inserted.wait()  # decide after the other replica's uncommitted assignment
                roster = await RosterCache().load(session, at=AT)
                [decision] = await service.assign_many(
                    session=session, leads=[scored("lead-1")], rules=_rules(), roster=roster, at=AT
                )
                if delay_commit:
                    first_inserted.set()
                    # Commit only once the other replica is blocked on our uncommitted rows.
                    await wait_until(lambda: _someone_waits_on_a_lock(engine), timeout=10, what="a blocked replica")
                await session.commit()
                return decision.assignment.id

        ids = await asyncio.gather(replica(delay_commit=True), replica(delay_commit=False))

        assert ids[0] == ids[1]
        async with sessions() as session:
            rows = (await session.exec(select(Assignment))).all()
            loads = (await session.exec(select(RepLoad))).all()
        assert [row.id for row in rows] == [ids[0]]
        assert sum(load.assigned for load in loads) == 1  # the loser's pick and count rolled back with it
    finally:
        await engine.dispose()


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Storage]]:
    async with migrated(database_url, migrations_of("router")) as storage:
        async with storage.sessions() as session:
            session.add(stored_key("key_reader", READER_KEY, team=Team.SALES, scopes=[Scope.ROUTING_READ]))
            await session.commit()
        app = FastAPI()
        install_problem_handlers(app)
        app.state.runtime = SimpleNamespace(sessions=storage.sessions)
        app.include_router(assignments_router)
        headers = {"Authorization": f"Bearer {READER_KEY}"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://router",
                                     headers=headers) as client:  # fmt: skip
            yield client, storage


async def test_get_assignment_explains_the_decision_and_its_history(
    api: tuple[httpx.AsyncClient, Storage],
) -> None:
    client, storage = api
    await _staff(storage)
    [decision] = await _assign(storage, [scored("lead-1")])

    answer = await client.get("/v1/assignments/lead-1")

    assert answer.status_code == 200
    body = answer.json()
    assert body["current"]["id"] == decision.assignment.id
    assert body["current"]["explanation"]["rule"] == "emea"
    assert [entry["sequence"] for entry in body["history"]] == [1]
    missing = await client.get("/v1/assignments/lead-unknown")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert (await client.get("/v1/assignments/lead-1", headers={"Authorization": "Bearer nope"})).status_code == 401


async def test_the_handler_announces_each_outcome_through_the_outbox(database_url: str) -> None:
    from leadrelay.events import new_event
    from router.assignments.handlers import on_lead_scored
    from router.config import RouterSettings
    from router.context import RouterContext

    async with migrated(database_url, migrations_of("router")) as storage:
        await _staff(storage)
        context = RouterContext.of(RouterSettings(database_url=storage.url))
        events = [new_event(scored("lead-1"), source="test"), new_event(scored("lead-2", mql=False), source="test")]
        async with storage.sessions() as session:
            await on_lead_scored(events, session, context=context)
            await session.commit()
        async with storage.sessions() as session:
            rows = (await session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id)))).all()
        published = [parse_event(row.payload).data for row in rows if row.topic == "leads.assigned"]
        # Before any routing agreement is signed, the built-in rules give both leads to the default rep.
        assert [(type(event).__name__, event.lead_id) for event in published] == [
            ("LeadAssigned", "lead-1"),
            ("LeadAssigned", "lead-2"),
        ]
        assert all(isinstance(event, LeadAssigned) and event.rep_id == "rep-default" for event in published)
        first = published[0]
        assert isinstance(first, LeadAssigned)
        assert (first.grade, first.source, first.mql) == ("A1", "webinar", True)
        assert first.explanation is not None
        assert first.explanation["version"] == "builtin"
