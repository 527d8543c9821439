"""The SLA escalation ladder's remind and notify_manager steps, and warnings, sent to a real local HTTP server.

On SQLite and PostgreSQL: a breach's deliveries are created in the consumer's transaction and sent by
the delivery job; a redelivered breach sends nothing twice; a breach of a replaced assignment sends
nothing; the ladder's order holds with a reassignment in it.
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import standardwebhooks
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from sqlmodel import col, select

from leadrelay.apikeys import Scope, Team
from leadrelay.events import (
    AccountMatch,
    CloudEvent,
    EscalationStep,
    LeadReceived,
    LeadScored,
    MatchMethod,
    SlaBreached,
    SlaWarning,
    new_event,
)
from leadrelay.problems import install_problem_handlers
from leadrelay.stages import LeadStage
from leadrelay.testing import Storage, migrated, migrations_of, stored_key, wait_until
from router.assignments.handlers import on_lead_scored
from router.assignments.models import Assignment
from router.config import RouterSettings
from router.context import RouterContext
from router.notifications import escalations
from router.notifications.handlers import on_sla_warning
from router.notifications.jobs import run_deliveries, slack_message
from router.notifications.metrics import NotificationMetrics
from router.notifications.models import Delivery, DeliveryKind, DeliveryStatus
from router.notifications.router import router as notifications_router
from router.reassignment.handlers import on_sla_breached
from router.reps import service as reps
from router.reps.crypto import channel_box
from router.reps.schemas import RepPut
from router.rules.document import RoutingDocument
from router.rules.engine import compile_rules
from router.teams.models import Team as SalesTeam
from services.router.tests.scripted_endpoint import FlakyServer, Received

SECRET_KEY = "test-secret-key-0123456789"
WEBHOOK_SECRET = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LWZvci1hZGE="
READER_KEY = "lr_test_reader_0123456789abcdef"
AT = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
DUE = AT + timedelta(minutes=15)
ALL_DAY = {day: [{"start": "00:00", "end": "24:00"}] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
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
REMIND, REASSIGN, NOTIFY_MANAGER = EscalationStep.REMIND, EscalationStep.REASSIGN, EscalationStep.NOTIFY_MANAGER


@pytest.fixture
async def receiver() -> AsyncIterator[FlakyServer]:
    server = FlakyServer()
    await server.start()
    yield server
    await server.stop()


@dataclass
class Router:
    """Router's schema on the test's backend, a context routing every lead to team `sales`, and its delivery job."""

    storage: Storage
    context: RouterContext
    receiver: FlakyServer
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        metrics = NotificationMetrics(CollectorRegistry())
        self.task = asyncio.create_task(run_deliveries(sessions=self.storage.sessions, context=self.context,
                                                       metrics=metrics))  # fmt: skip

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    def webhook(self, path: str) -> dict[str, Any]:
        return {"kind": "webhook", "url": self.receiver.url(path), "secret": WEBHOOK_SECRET}

    def slack(self, path: str) -> dict[str, Any]:
        return {"kind": "slack", "url": self.receiver.url(path)}

    async def staff(self, manager: str | None, *members: tuple[str, list[dict[str, Any]]]) -> None:
        """Team `sales` (open around the clock) with its manager, and its members with their channels."""
        async with self.storage.sessions() as session:
            session.add(SalesTeam(id="sales", name="Sales", timezone="UTC", working_hours=ALL_DAY,
                                  manager_rep_id=manager))  # fmt: skip
            await session.commit()
        for rep_id, channels in members:
            await self.put_rep(rep_id, ["sales"], channels)

    async def put_rep(self, rep_id: str, teams: list[str], channels: list[dict[str, Any]]) -> None:
        async with self.storage.sessions() as session:
            rep_in = RepPut.model_validate({"name": f"Rep {rep_id}", "teams": teams, "channels": channels})
            await reps.put(session=session, rep_id=rep_id, rep_in=rep_in, box=channel_box(SECRET_KEY), actor=None)

    async def route(self, lead_id: str) -> Assignment:
        """The lead scored and routed as router's consumer does it."""
        async with self.storage.sessions() as session:
            await on_lead_scored([new_event(scored_lead(lead_id), source="leadrelay/scoring")], session,
                                 context=self.context)  # fmt: skip
            await session.commit()
        return (await self.history(lead_id))[-1]

    async def breach(self, event: CloudEvent[SlaBreached]) -> None:
        """Deliver an sla.breached as router's consumer does (one transaction)."""
        async with self.storage.sessions() as session:
            await on_sla_breached(event, session, context=self.context)
            await session.commit()

    async def warn(self, event: CloudEvent[SlaWarning]) -> None:
        async with self.storage.sessions() as session:
            await on_sla_warning([event], session, context=self.context)
            await session.commit()

    async def history(self, lead_id: str) -> list[Assignment]:
        async with self.storage.sessions() as session:
            query = select(Assignment).where(Assignment.lead_id == lead_id).order_by(col(Assignment.sequence))
            return list((await session.exec(query)).all())

    async def deliveries(self, lead_id: str, *kinds: DeliveryKind) -> list[Delivery]:
        async with self.storage.sessions() as session:
            query = select(Delivery).where(Delivery.lead_id == lead_id)
            if kinds:
                query = query.where(col(Delivery.kind).in_(kinds))
            query = query.order_by(col(Delivery.created_at), col(Delivery.rep_id), col(Delivery.channel_index))
            return list((await session.exec(query.execution_options(populate_existing=True))).all())

    def sent(self, lead_id: str, count: int) -> Callable[[], Awaitable[list[Delivery]]]:
        """A probe: the lead's deliveries once `count` of them are delivered and none is pending."""

        async def probe() -> list[Delivery]:
            rows = await self.deliveries(lead_id)
            delivered = [row for row in rows if row.status == DeliveryStatus.DELIVERED]
            pending = [row for row in rows if row.status == DeliveryStatus.PENDING]
            return rows if len(delivered) >= count and not pending else []

        return probe


@pytest.fixture
async def router(database_url: str, receiver: FlakyServer) -> AsyncIterator[Router]:
    async with migrated(database_url, migrations_of("router")) as storage:
        async with storage.sessions() as session:
            session.add(stored_key("key_reader", READER_KEY, team=Team.SALES, scopes=[Scope.ROUTING_READ]))
            await session.commit()
        settings = RouterSettings(_env_file=None, LEADRELAY_SECRET_KEY=SECRET_KEY, database_url=storage.url,
                                  notify_sla_wait_seconds=0.0, notify_retry_base_seconds=0.02,
                                  notify_timeout_seconds=2.0, notify_max_sleep_seconds=0.2)  # fmt: skip
        context = RouterContext.of(settings)
        context.rulesets.builtin = compile_rules(RULES, version="test")
        running = Router(storage, context, receiver)
        running.start()
        yield running
        await running.stop()


def scored_lead(lead_id: str) -> LeadScored:
    lead = LeadReceived(lead_id=lead_id, email=f"{lead_id}@acme.example", first_name="Grace", last_name="Hopper",
                        company="Acme", job_title="CTO", source="api", received_at=AT)  # fmt: skip
    account = AccountMatch(account_id="acct-acme", method=MatchMethod.DOMAIN, confidence=1.0)
    return LeadScored(lead_id=lead_id, score=87, stage=LeadStage.MQL, icp_version="1", explanation=[],
                      scored_at=AT, lead=lead, grade="A1", mql=True, mql_reason="score 87 >= 70",
                      account=account)  # fmt: skip


def breach_of(
    assignment: Assignment, *escalation: EscalationStep, obligation: str = "accept"
) -> CloudEvent[SlaBreached]:
    assert assignment.rep_id is not None
    breached = SlaBreached(lead_id=assignment.lead_id, obligation=obligation, assignment_id=assignment.id,
                           rep_id=assignment.rep_id, team_id=assignment.team_id, grade="A1", source="api",
                           policy_version="3", due_at=DUE, elapsed_seconds=900.0, elapsed_business_seconds=900.0,
                           breached_at=DUE, escalation=list(escalation))  # fmt: skip
    return new_event(breached, source="leadrelay/sla-monitor")


def warning_of(assignment: Assignment, obligation: str = "accept") -> CloudEvent[SlaWarning]:
    assert assignment.rep_id is not None
    warned = SlaWarning(lead_id=assignment.lead_id, obligation=obligation, assignment_id=assignment.id,
                        rep_id=assignment.rep_id, team_id=assignment.team_id, due_at=DUE, remaining_seconds=180.0,
                        warned_at=DUE - timedelta(minutes=3), elapsed_seconds=720.0)  # fmt: skip
    return new_event(warned, source="leadrelay/sla-monitor")


def verified(request: Received) -> dict[str, Any]:
    body: dict[str, Any] = standardwebhooks.Webhook(WEBHOOK_SECRET).verify(request.body, request.headers)
    return body


async def test_a_breach_reminds_the_rep_and_notifies_the_manager_on_each_of_their_channels(
    router: Router, receiver: FlakyServer
) -> None:
    await router.staff("rep-grace", ("rep-ada", [router.webhook("/ada")]))
    await router.put_rep("rep-grace", [], [router.webhook("/grace"), router.slack("/grace-slack")])
    assignment = await router.route("lead-1")
    assert assignment.rep_id == "rep-ada"
    await wait_until(router.sent("lead-1", 1), timeout=10, what="the assignment's notification")

    await router.breach(breach_of(assignment, REMIND, NOTIFY_MANAGER))

    rows = await wait_until(router.sent("lead-1", 4), timeout=10, what="reminder and escalations delivered")
    assert sorted((row.kind, row.rep_id, row.channel_kind, row.obligation) for row in rows) == [
        ("assignment", "rep-ada", "webhook", None),
        ("escalation", "rep-grace", "slack", "accept"),
        ("escalation", "rep-grace", "webhook", "accept"),
        ("reminder", "rep-ada", "webhook", "accept"),
    ]
    assignment_request, reminder_request = receiver.to("/ada")
    assert reminder_request.headers["webhook-id"] == f"msg_{assignment.id}_reminder_accept_0"
    reminder = verified(reminder_request)
    assert (reminder["type"], reminder["assignment_id"], reminder["rep_id"]) == (
        "sla.reminder",
        assignment.id,
        "rep-ada",
    )
    assert reminder["recipient_rep_id"] == "rep-ada"
    assert reminder["sla"]["obligation"] == "accept"
    assert datetime.fromisoformat(reminder["sla"]["due_at"]) == DUE
    assert reminder["sla"]["escalation"] == ["remind", "notify_manager"]
    # The lead's context is the assignment's notification's.
    first = verified(assignment_request)
    for key in ("lead", "grade", "score", "mql", "explanation", "account", "rule"):
        assert reminder[key] == first[key], key

    [to_manager] = receiver.to("/grace")
    assert to_manager.headers["webhook-id"] == f"msg_{assignment.id}_escalation_accept_0"
    escalation = verified(to_manager)
    assert (escalation["type"], escalation["rep_id"], escalation["recipient_rep_id"]) == (
        "sla.escalation",
        "rep-ada",
        "rep-grace",
    )
    [slack] = receiver.to("/grace-slack")
    message = json.loads(slack.body)
    assert message["text"] == "Escalation: rep rep-ada missed accept for Acme"
    shown = str(message["blocks"])
    assert "2026-11-27 09:45 UTC" in shown
    assert "http" not in shown


async def test_a_redelivered_breach_sends_nothing_twice(router: Router, receiver: FlakyServer) -> None:
    await router.staff("rep-grace", ("rep-ada", [router.webhook("/ada")]))
    await router.put_rep("rep-grace", [], [router.webhook("/grace")])
    assignment = await router.route("lead-1")
    breach = breach_of(assignment, REMIND, NOTIFY_MANAGER)

    await router.breach(breach)
    await router.breach(breach)  # before the first was sent
    await wait_until(router.sent("lead-1", 3), timeout=10, what="sent once")
    await router.breach(breach)  # after it was sent
    redelivered_with_a_new_id = new_event(breach.data, source="leadrelay/sla-monitor")
    await router.breach(redelivered_with_a_new_id)  # a replay of the monitor's outbox makes the same breach

    assert len(await router.deliveries("lead-1")) == 3
    assert [len(receiver.to(path)) for path in ("/ada", "/grace")] == [2, 1]


async def test_a_breach_of_a_replaced_assignment_sends_nothing(router: Router, receiver: FlakyServer) -> None:
    await router.staff("rep-grace", ("rep-ada", [router.webhook("/ada")]), ("rep-bob", [router.webhook("/bob")]))
    await router.put_rep("rep-grace", [], [router.webhook("/grace")])
    first = await router.route("lead-1")
    await router.breach(breach_of(first, REASSIGN, obligation="first_touch"))
    second = (await router.history("lead-1"))[-1]
    assert second.id != first.id

    await router.breach(breach_of(first, REMIND, NOTIFY_MANAGER))  # late: the lead has moved on
    await router.warn(warning_of(first))

    assert await router.deliveries("lead-1", DeliveryKind.REMINDER, DeliveryKind.ESCALATION, DeliveryKind.WARNING) == []
    await wait_until(router.sent("lead-1", 2), timeout=10, what="both assignments' notifications")
    assert receiver.to("/grace") == []


async def test_the_ladder_runs_in_order_the_reminder_goes_to_the_rep_who_breached_then_the_lead_moves(
    router: Router, receiver: FlakyServer
) -> None:
    await router.staff("rep-grace", ("rep-ada", [router.webhook("/ada")]), ("rep-bob", [router.webhook("/bob")]))
    await router.put_rep("rep-grace", [], [router.webhook("/grace")])
    first = await router.route("lead-1")
    breacher = first.rep_id
    other = "rep-bob" if breacher == "rep-ada" else "rep-ada"

    await router.breach(breach_of(first, REMIND, REASSIGN, NOTIFY_MANAGER))

    history = await router.history("lead-1")
    assert [(row.rep_id, row.trigger) for row in history] == [(breacher, "routed"), (other, "sla_breach")]
    await wait_until(router.sent("lead-1", 4), timeout=10, what="both assignments, reminder and escalation sent")
    [reminder] = await router.deliveries("lead-1", DeliveryKind.REMINDER)
    assert (reminder.rep_id, reminder.assignment_id) == (breacher, first.id)
    [escalation] = await router.deliveries("lead-1", DeliveryKind.ESCALATION)
    # The manager hears of the breached assignment, named by its rep, after the lead has moved.
    assert (escalation.rep_id, escalation.assignment_id, escalation.payload["rep_id"]) == (
        "rep-grace",
        first.id,
        breacher,
    )
    new_owner = [row for row in await router.deliveries("lead-1", DeliveryKind.ASSIGNMENT) if row.rep_id == other]
    assert [row.assignment_id for row in new_owner] == [history[1].id]
    assert [verified(request)["type"] for request in receiver.to(f"/{breacher.removeprefix('rep-')}")] == [
        "lead.assigned",
        "sla.reminder",
    ]


@pytest.mark.parametrize(
    ("manager", "manager_channels", "why"),
    [
        (None, None, "team sales has no manager"),
        ("rep-grace", [], "manager rep-grace has no enabled channel"),
        ("rep-nobody", None, "manager rep-nobody has no enabled channel"),
    ],
    ids=["no manager", "a manager without channels", "a manager who is no stored rep"],
)
async def test_a_manager_who_cannot_be_told_shows_in_the_delivery_log_as_nothing_to_send(
    router: Router, receiver: FlakyServer, manager: str | None, manager_channels: list[dict[str, Any]] | None, why: str
) -> None:
    await router.staff(manager, ("rep-ada", [router.webhook("/ada")]))
    if manager_channels is not None and manager is not None:
        await router.put_rep(manager, [], manager_channels)
    assignment = await router.route("lead-1")

    await router.breach(breach_of(assignment, REMIND, NOTIFY_MANAGER))
    await router.breach(breach_of(assignment, REMIND, NOTIFY_MANAGER))
    await wait_until(router.sent("lead-1", 2), timeout=10, what="assignment and reminder sent")

    app = FastAPI()
    install_problem_handlers(app)
    app.state.runtime = SimpleNamespace(
        sessions=router.storage.sessions, settings=SimpleNamespace(secret_key=SecretStr(SECRET_KEY))
    )
    app.include_router(notifications_router)
    headers = {"Authorization": f"Bearer {READER_KEY}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://router",
                                 headers=headers) as client:  # fmt: skip
        answer = await client.get("/v1/assignments/lead-1/deliveries")

    assert answer.status_code == 200
    log = answer.json()["deliveries"]
    shown = sorted((entry["kind"], entry["obligation"], entry["channel_kind"], entry["status"]) for entry in log)
    assert shown == [
        ("assignment", None, "webhook", "delivered"),
        ("escalation", "accept", "none", "skipped"),
        ("reminder", "accept", "webhook", "delivered"),
    ]
    [skipped] = [entry for entry in log if entry["status"] == "skipped"]
    assert (skipped["last_error"], skipped["channel_index"], skipped["attempts"]) == (why, -1, 0)
    assert skipped["rep_id"] == (manager or "")
    assert "127.0.0.1" not in answer.text
    assert [len(receiver.to(path)) for path in ("/ada",)] == [2]


async def test_a_warning_gives_the_rep_a_heads_up_once(router: Router, receiver: FlakyServer) -> None:
    await router.staff(None, ("rep-ada", [router.webhook("/ada"), router.slack("/ada-slack")]))
    assignment = await router.route("lead-1")
    warning = warning_of(assignment)

    await router.warn(warning)
    await router.warn(warning)

    await wait_until(router.sent("lead-1", 4), timeout=10, what="assignment and warning on both channels")
    rows = await router.deliveries("lead-1", DeliveryKind.WARNING)
    assert [(row.rep_id, row.channel_kind, row.obligation) for row in rows] == [
        ("rep-ada", "webhook", "accept"),
        ("rep-ada", "slack", "accept"),
    ]
    heads_up = verified(receiver.to("/ada")[-1])
    assert (heads_up["type"], heads_up["sla"]["obligation"], heads_up["sla"]["remaining_seconds"]) == (
        "sla.warning",
        "accept",
        180.0,
    )
    message = json.loads(receiver.to("/ada-slack")[-1].body)
    assert message["text"] == "Heads-up: accept for Acme is due 2026-11-27 09:45 UTC (3 min left)"


# Pure parts.


def test_webhook_ids_are_stable_per_assignment_obligation_kind_and_channel_and_fit_their_column() -> None:
    assignment_id = "0b7c3e9a-1d0f-4a55-8f57-6c0c1c8a9b10"
    made = {
        escalations.webhook_id(assignment_id, obligation=obligation, kind=kind, channel_index=index)
        for obligation in ("accept", "first_touch")
        for kind in (DeliveryKind.WARNING, DeliveryKind.REMINDER, DeliveryKind.ESCALATION)
        for index in (escalations.NO_CHANNEL, 0, 1)
    }
    assert len(made) == 18
    assert escalations.webhook_id(assignment_id, obligation="accept", kind=DeliveryKind.REMINDER, channel_index=0) == (
        f"msg_{assignment_id}_reminder_accept_0"
    )
    long = "a disposition within three business days, qualified or rejected" * 2
    made_long = escalations.webhook_id(assignment_id, obligation=long, kind=DeliveryKind.ESCALATION, channel_index=0)
    assert made_long == escalations.webhook_id(
        assignment_id, obligation=long, kind=DeliveryKind.ESCALATION, channel_index=0
    )
    assert len(made_long) <= 100


def test_each_sla_kind_has_a_slack_message_that_reads_well() -> None:
    body = {
        "lead_id": "lead-1",
        "rep_id": "rep-ada",
        "team_id": "sales",
        "grade": "A1",
        "score": 87,
        "lead": {"company": "Acme", "first_name": "Grace", "last_name": "Hopper", "job_title": "CTO"},
        "sla": {"obligation": "first_touch", "due_at": "2026-11-27T09:45:00+00:00", "escalation": ["remind"]},
    }
    texts = {kind: slack_message({**body, "type": kind})["text"] for kind in escalations.SLA_PAYLOAD_TYPES}
    assert texts == {
        "sla.warning": "Heads-up: first_touch for Acme is due 2026-11-27 09:45 UTC (0 min left)",
        "sla.reminder": "Reminder: first_touch for Acme was due 2026-11-27 09:45 UTC and is overdue",
        "sla.escalation": "Escalation: rep rep-ada missed first_touch for Acme",
    }
    reminder = str(slack_message({**body, "type": "sla.reminder"})["blocks"])
    assert "Grace Hopper, CTO, Acme" in reminder
    assert "remind" in reminder
