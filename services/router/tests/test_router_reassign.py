"""Reassignment on SQLite and PostgreSQL: after an SLA breach whose escalation says reassign, and by hand over HTTP."""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import col, select

from leadrelay.apikeys import ApiKey, Scope, Team, hash_key
from leadrelay.audit import AuditEntry
from leadrelay.events import (
    CloudEvent,
    EscalationStep,
    EventData,
    LeadAssigned,
    LeadQueued,
    LeadReceived,
    LeadScored,
    SlaBreached,
    new_event,
    parse_as,
)
from leadrelay.outbox import OutboxMessage
from leadrelay.problems import install_problem_handlers
from leadrelay.stages import LeadStage
from leadrelay.testing import Storage, migrated, migrations_of
from router.assignments.handlers import on_lead_scored
from router.assignments.models import Assignment
from router.config import RouterSettings
from router.context import RouterContext
from router.reassignment.handlers import on_sla_breached
from router.reassignment.router import router as reassignment_router
from router.reps.models import Rep
from router.rules.document import RoutingDocument
from router.rules.engine import compile_rules
from router.teams.models import Team as SalesTeam

AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
ALL_DAY = {day: [{"start": "00:00", "end": "24:00"}] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
WRITER_KEY = "lr_test_writer_0123456789abcdef"
READER_KEY = "lr_test_reader_0123456789abcdef"
RULES = RoutingDocument.model_validate(
    {
        "rules": [
            {
                "name": "sales",
                "when": "always",
                "action": {"type": "team", "team": "sales"},
                "otherwise": {"type": "queue", "team": "sales"},
            }
        ]
    }
)


@dataclass
class Router:
    """Router's schema on the test's backend, and a context routing every lead to the team `sales`."""

    storage: Storage
    context: RouterContext

    async def staff(self, members: list[str], manager: str | None = None, inactive: tuple[str, ...] = ()) -> None:
        """The team `sales` (open around the clock) with these reps, and its manager (a rep of no team)."""
        async with self.storage.sessions() as session:
            session.add(SalesTeam(id="sales", name="Sales", timezone="UTC", working_hours=ALL_DAY,
                                  manager_rep_id=manager))  # fmt: skip
            for rep_id in members:
                session.add(Rep(id=rep_id, name=rep_id, teams=["sales"], active=rep_id not in inactive))
            if manager is not None:
                session.add(Rep(id=manager, name=manager, teams=[]))
            await session.commit()

    async def route(self, lead_id: str) -> Assignment:
        """The lead received, scored and routed as router's consumer does it."""
        lead = LeadReceived(lead_id=lead_id, email=f"{lead_id}@example.com", source="api", received_at=AT)
        scored = LeadScored(lead_id=lead_id, score=60, stage=LeadStage.MQL, icp_version="1", explanation=[],
                            scored_at=AT, lead=lead)  # fmt: skip
        async with self.storage.sessions() as session:
            await on_lead_scored([new_event(scored, source="leadrelay/scoring")], session, context=self.context)
            await session.commit()
        return (await self.history(lead_id))[-1]

    async def breach(self, event: CloudEvent[SlaBreached]) -> None:
        """Deliver an sla.breached as router's consumer does (one transaction)."""
        async with self.storage.sessions() as session:
            await on_sla_breached(event, session, context=self.context)
            await session.commit()

    async def history(self, lead_id: str) -> list[Assignment]:
        async with self.storage.sessions() as session:
            query = select(Assignment).where(Assignment.lead_id == lead_id).order_by(col(Assignment.sequence))
            return list((await session.exec(query)).all())

    async def announced(self) -> list[EventData]:
        """lead.assigned and lead.queued in the outbox, in order."""
        kinds: dict[str, type[EventData]] = {"lead.assigned": LeadAssigned, "lead.queued": LeadQueued}
        async with self.storage.sessions() as session:
            rows = (await session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id)))).all()
        return [parse_as(row.payload, kinds[row.event_type]).data for row in rows if row.event_type in kinds]


def breach_of(assignment: Assignment, *escalation: EscalationStep) -> CloudEvent[SlaBreached]:
    assert assignment.rep_id is not None
    breached = SlaBreached(lead_id=assignment.lead_id, obligation="first_response", assignment_id=assignment.id,
                           rep_id=assignment.rep_id, due_at=AT, breached_at=AT,
                           escalation=list(escalation or [EscalationStep.REASSIGN]))  # fmt: skip
    return new_event(breached, source="leadrelay/sla-monitor")


@pytest.fixture
async def router(database_url: str) -> AsyncIterator[Router]:
    async with migrated(database_url, migrations_of("router")) as storage:
        context = RouterContext.of(RouterSettings(database_url=storage.url))
        context.rulesets.builtin = compile_rules(RULES, version="test")
        yield Router(storage, context)


# Each case: the team's active reps, its inactive ones, its manager, and where each breach in a row
# (of the then current assignment) sends the lead: "member" (an active rep of the team who has not
# held it), the manager's id, or "queue".
CASES = {
    "next available rep who has not held it": (["rep-ada", "rep-bob"], [], "rep-grace", ["member"]),
    "each rep once, then the manager": (["rep-ada", "rep-bob", "rep-cy"], [], "rep-grace",
                                        ["member", "member", "rep-grace"]),
    "the manager when nobody is left": (["rep-ada"], [], "rep-grace", ["rep-grace"]),
    "the queue once the manager has held it": (["rep-ada"], [], "rep-grace", ["rep-grace", "queue"]),
    "the queue when the team has no manager": (["rep-ada"], [], None, ["queue"]),
    "inactive reps are passed over": (["rep-ada"], ["rep-bob", "rep-cy"], "rep-grace", ["rep-grace"]),
}  # fmt: skip


@pytest.mark.parametrize(("members", "inactive", "manager", "expected"), CASES.values(), ids=CASES.keys())
async def test_a_breach_reassigns_by_the_rule(
    router: Router, members: list[str], inactive: list[str], manager: str | None, expected: list[str]
) -> None:
    breaches = len(expected)
    await router.staff([*members, *inactive], manager, inactive=tuple(inactive))
    first = await router.route("lead-1")
    assert first.rep_id in members

    for _ in range(breaches):
        await router.breach(breach_of((await router.history("lead-1"))[-1]))

    history = await router.history("lead-1")
    assert [row.sequence for row in history] == list(range(1, breaches + 2))
    for before, after, want in zip(history[:-1], history[1:], expected, strict=True):
        held = {row.rep_id for row in history[: after.sequence - 1]}
        if want == "member":
            assert (after.outcome, after.rep_id in members, after.rep_id in held) == ("assigned", True, False)
        elif want == "queue":
            assert (after.outcome, after.rep_id, after.team_id) == ("queued", None, "sales")
            last = after.explanation["steps"][-1]
            passed_over = [] if manager is None else [{"rep_id": manager, "reason": "held_before"}]
            assert (last["action"], last["outcome"], last["skipped"]) == (
                {"type": "team_queue", "team": "sales"},
                "team_queue",
                passed_over,
            )
        else:
            assert (after.outcome, after.rep_id, after.team_id) == ("assigned", want, "sales")
            assert after.explanation["steps"][-1] == {
                "step": 2, "action": {"type": "manager", "team": "sales"}, "outcome": "manager", "rep_id": want,
                "skipped": [], "skipped_omitted": 0,
            }  # fmt: skip
        assert (after.trigger, after.reason, after.previous_assignment_id) == (
            "sla_breach",
            "first_response breached",
            before.id,
        )
    announced = await router.announced()
    assert len(announced) == breaches + 1  # the first assignment, then one per reassignment
    for event, row, before in zip(announced[1:], history[1:], history[:-1], strict=True):
        assert isinstance(event, LeadQueued if row.outcome == "queued" else LeadAssigned)
        assert (event.assignment_id, event.sequence, event.trigger, event.previous_assignment_id) == (
            row.id,
            row.sequence,
            "sla_breach",
            before.id,
        )
        if isinstance(event, LeadAssigned):
            assert (event.rep_id, event.previous_rep_id, event.reason) == (
                row.rep_id,
                before.rep_id,
                "first_response breached",
            )


IGNORED = {
    "a stale breach (its assignment replaced)": "stale",
    "an escalation without reassign": "no_reassign",
    "a redelivered breach": "redelivered",
    "a breach of an unknown lead": "unknown",
}


@pytest.mark.parametrize("case", IGNORED.values(), ids=IGNORED.keys())
async def test_breaches_that_change_nothing(router: Router, case: str) -> None:
    await router.staff(["rep-ada", "rep-bob", "rep-cy"], "rep-grace")
    first = await router.route("lead-1")
    breach = breach_of(first)
    if case in ("stale", "redelivered"):
        await router.breach(breach)
    before = await router.history("lead-1")
    announced = await router.announced()

    if case == "stale":
        await router.breach(breach_of(first))  # a second breach of the replaced assignment (another obligation)
    elif case == "no_reassign":
        await router.breach(breach_of(first, EscalationStep.REMIND, EscalationStep.NOTIFY_MANAGER))
    elif case == "redelivered":
        await router.breach(breach)  # the same event again
    else:
        await router.breach(breach_of(first.model_copy(update={"lead_id": "lead-unknown"})))

    assert [(row.id, row.rep_id) for row in await router.history("lead-1")] == [(r.id, r.rep_id) for r in before]
    assert await router.announced() == announced


# --- By hand: POST /v1/assignments/{lead_id}/reassign


@pytest.fixture
async def api(router: Router) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the reassign route holding a routing:write key (a routing:read key is READER)."""
    async with router.storage.sessions() as session:
        for key_id, secret, scopes in (
            ("key_writer", WRITER_KEY, [Scope.ROUTING_WRITE]),
            ("key_reader", READER_KEY, [Scope.ROUTING_READ]),
        ):
            session.add(ApiKey(id=key_id, name=key_id, team=Team.OPS, scopes=scopes, key_hash=hash_key(secret)))
        await session.commit()
    app = FastAPI()
    install_problem_handlers(app)
    app.state.runtime = SimpleNamespace(sessions=router.storage.sessions)
    app.state.router_context = router.context
    app.include_router(reassignment_router)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {WRITER_KEY}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://router", headers=headers) as client:
        yield client


async def test_a_named_rep_takes_the_lead_audited_and_announced(router: Router, api: httpx.AsyncClient) -> None:
    await router.staff(["rep-ada"], "rep-grace")
    first = await router.route("lead-1")

    answer = await api.post("/v1/assignments/lead-1/reassign", json={"reason": "picked up", "rep_id": "rep-grace"})

    assert answer.status_code == 200, answer.text
    body = answer.json()
    current = body["current"]
    assert (current["sequence"], current["rep_id"], current["trigger"], current["reason"]) == (
        2,
        "rep-grace",
        "manual",
        "picked up",
    )
    assert current["previous_assignment_id"] == first.id
    assert [row["sequence"] for row in body["history"]] == [1, 2]
    async with router.storage.sessions() as session:
        [entry] = (await session.exec(select(AuditEntry))).all()
    assert (entry.action, entry.target, entry.actor_key_id) == ("assignment.reassigned", "lead-1", "key_writer")
    assert (entry.detail["rep_id"], entry.detail["previous_rep_id"], entry.detail["reason"]) == (
        "rep-grace",
        "rep-ada",
        "picked up",
    )
    event = (await router.announced())[-1]
    assert isinstance(event, LeadAssigned)
    assert (event.rep_id, event.trigger, event.previous_rep_id) == ("rep-grace", "manual", "rep-ada")


async def test_without_a_rep_the_next_one_who_has_not_held_it(router: Router, api: httpx.AsyncClient) -> None:
    await router.staff(["rep-ada", "rep-bob"], "rep-grace")
    first = await router.route("lead-1")

    answer = await api.post("/v1/assignments/lead-1/reassign", json={"reason": "off sick"})

    assert answer.status_code == 200, answer.text
    current = answer.json()["current"]
    assert current["rep_id"] in {"rep-ada", "rep-bob"} - {first.rep_id}
    assert (current["trigger"], current["reason"]) == ("manual", "off sick")


BAD = {
    "no reason": ({}, "reason"),
    "an empty reason": ({"reason": ""}, "reason"),
    "a reason over 500 characters": ({"reason": "x" * 501}, "reason"),
    "an unknown rep": ({"reason": "r", "rep_id": "rep-nobody"}, "rep_id"),
    "an inactive rep": ({"reason": "r", "rep_id": "rep-gone"}, "rep_id"),
    "a malformed rep id": ({"reason": "r", "rep_id": "no spaces"}, "rep_id"),
    "an unknown field": ({"reason": "r", "rep": "rep-ada"}, "rep"),
}


@pytest.mark.parametrize(("body", "field"), BAD.values(), ids=BAD.keys())
async def test_bad_input_is_422_naming_the_field(
    router: Router, api: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    await router.staff(["rep-ada", "rep-gone"], inactive=("rep-gone",))
    await router.route("lead-1")

    answer = await api.post("/v1/assignments/lead-1/reassign", json=body)

    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert [error["field"] for error in answer.json()["errors"]] == [field]
    assert len(await router.history("lead-1")) == 1


async def test_refusals(router: Router, api: httpx.AsyncClient) -> None:
    await router.staff(["rep-ada"])
    first = await router.route("lead-1")
    body = {"reason": "r"}

    assert (
        await api.post("/v1/assignments/lead-1/reassign", json=body, headers={"Authorization": ""})
    ).status_code == 401
    reader = {"Authorization": f"Bearer {READER_KEY}"}
    forbidden = await api.post("/v1/assignments/lead-1/reassign", json=body, headers=reader)
    assert (forbidden.status_code, forbidden.json()["detail"]) == (
        403,
        "The API key lacks the scope(s): routing:write.",
    )
    unknown = await api.post("/v1/assignments/lead-unknown/reassign", json=body)
    assert (unknown.status_code, unknown.json()["detail"]) == (404, "Lead lead-unknown has not been routed.")
    holds = await api.post("/v1/assignments/lead-1/reassign", json={**body, "rep_id": first.rep_id})
    assert (holds.status_code, holds.json()["detail"]) == (409, "rep rep-ada holds lead lead-1 already")
    # Nobody left and no manager: to the team's queue, once; a second time it is in that queue already.
    assert (await api.post("/v1/assignments/lead-1/reassign", json=body)).json()["current"]["outcome"] == "queued"
    again = await api.post("/v1/assignments/lead-1/reassign", json=body)
    assert again.status_code == 409
    assert "in team sales's queue already" in again.json()["detail"]
    async with router.storage.sessions() as session:
        audited = (await session.exec(select(AuditEntry))).all()
    assert len(audited) == 1  # only the reassignment made
    assert len(await router.history("lead-1")) == 2


async def test_concurrent_reassignments_make_one_sequence_each(router: Router, api: httpx.AsyncClient) -> None:
    await router.staff(["rep-ada", "rep-bob", "rep-cy", "rep-dee"], "rep-grace")
    await router.route("lead-1")

    answers = await asyncio.gather(
        *(api.post("/v1/assignments/lead-1/reassign", json={"reason": f"try {n}"}) for n in range(3))
    )

    assert {answer.status_code for answer in answers} <= {200, 409}
    made = [answer for answer in answers if answer.status_code == 200]
    history = await router.history("lead-1")
    assert [row.sequence for row in history] == list(range(1, len(made) + 2))
    assert len({row.rep_id for row in history}) == len(history)  # nobody got it twice
