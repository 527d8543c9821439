"""Telling the rep: deliveries against a real local HTTP server that fails on purpose, on SQLite and PostgreSQL."""

import asyncio
import contextlib
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
from sqlalchemy import text
from sqlmodel import col, select

from leadrelay.apikeys import Scope, Team
from leadrelay.audit import AuditEntry
from leadrelay.events import AccountMatch, LeadReceived, LeadScored, MatchMethod, SlaStarted, new_event, utcnow
from leadrelay.problems import install_problem_handlers
from leadrelay.stages import LeadStage
from leadrelay.testing import (
    Storage,
    free_port,
    migrated,
    migrations_of,
    recorded_statements,
    stored_key,
    wait_until,
)
from router.assignments.handlers import on_lead_scored
from router.assignments.models import Assignment, Outcome
from router.config import RouterSettings
from router.context import RouterContext
from router.notifications import service
from router.notifications.handlers import on_sla_started
from router.notifications.jobs import run_deliveries, slack_message, verdict
from router.notifications.metrics import NotificationMetrics
from router.notifications.models import Delivery, DeliveryStatus
from router.notifications.router import router as notifications_router
from router.notifications.wake import DELIVERIES_CHANNEL, DeliveryWake
from router.reps import service as reps
from router.reps.crypto import channel_box
from router.reps.models import Rep
from router.reps.schemas import RepPut
from router.teams import service as teams
from router.teams.schemas import TeamPut
from services.router.tests.scripted_endpoint import Answer, FlakyServer

SECRET_KEY = "test-secret-key-0123456789"
WEBHOOK_SECRET = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LWZvci1hZGE="
READER_KEY = "lr_test_reader_0123456789abcdef"
RECEIVED_AT = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
ALL_DAY = [{"start": "00:00", "end": "24:00"}]


@pytest.fixture
async def endpoint() -> AsyncIterator[FlakyServer]:
    server = FlakyServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def router_db(database_url: str) -> AsyncIterator[Storage]:
    async with migrated(database_url, migrations_of("router")) as storage:
        async with storage.sessions() as session:
            session.add(stored_key("key_reader", READER_KEY, team=Team.SALES, scopes=[Scope.ROUTING_READ]))
            team_in = TeamPut.model_validate(
                {
                    "name": "Default",
                    "timezone": "UTC",
                    "working_hours": dict.fromkeys(("mon", "tue", "wed", "thu", "fri", "sat", "sun"), ALL_DAY),
                }
            )
            await teams.put(session=session, team_id="default", team_in=team_in, actor=None)
        yield storage


def settings_of(**changes: Any) -> RouterSettings:
    values: dict[str, Any] = {
        "notify_retry_base_seconds": 0.02,
        "notify_sla_wait_seconds": 0.0,
        # Generous: the scripted server shares the test's event loop, and on a loaded machine a short
        # timeout turns its instant answer into a timed-out attempt the server never logged.
        "notify_timeout_seconds": 5.0,
        "notify_max_sleep_seconds": 0.2,
        **changes,
    }
    return RouterSettings(_env_file=None, LEADRELAY_SECRET_KEY=SECRET_KEY, **values)


@dataclass
class Notifier:
    """A router's notification side in process: its context, metrics, and the delivery job it can restart."""

    storage: Storage
    context: RouterContext
    metrics: NotificationMetrics
    task: asyncio.Task[None] | None = None

    def start(self, *, listen: bool = False) -> None:
        engine = self.storage.engine if listen else None
        self.task = asyncio.create_task(
            run_deliveries(sessions=self.storage.sessions, context=self.context, metrics=self.metrics, engine=engine)
        )

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


NotifierFactory = Callable[..., Awaitable[Notifier]]


@pytest.fixture
async def notifier(router_db: Storage) -> AsyncIterator[NotifierFactory]:
    made: list[Notifier] = []

    async def make(start: bool = True, **changes: Any) -> Notifier:
        made.append(
            Notifier(router_db, RouterContext.of(settings_of(**changes)), NotificationMetrics(CollectorRegistry()))
        )
        if start:
            made[-1].start()
        return made[-1]

    yield make
    for one in made:
        await one.stop()


async def put_rep(storage: Storage, rep_id: str, *channels: dict[str, Any]) -> None:
    async with storage.sessions() as session:
        rep_in = RepPut.model_validate({"name": "Ada Lovelace", "teams": ["default"], "channels": list(channels)})
        await reps.put(session=session, rep_id=rep_id, rep_in=rep_in, box=channel_box(SECRET_KEY), actor=None)


def webhook(endpoint: FlakyServer, path: str) -> dict[str, Any]:
    return {"kind": "webhook", "url": endpoint.url(path), "secret": WEBHOOK_SECRET}


def scored_lead(lead_id: str) -> LeadScored:
    lead = LeadReceived(
        lead_id=lead_id,
        email=f"{lead_id}@acme.example",
        first_name="Grace",
        last_name="Hopper",
        company="Acme",
        job_title="CTO",
        country="GB",
        source="api",
        received_at=RECEIVED_AT,
    )
    account = AccountMatch(account_id="acct-acme", method=MatchMethod.DOMAIN, confidence=1.0)
    return LeadScored(
        lead_id=lead_id,
        score=87,
        stage=LeadStage.MQL,
        icp_version="1",
        explanation=[],
        scored_at=RECEIVED_AT,
        lead=lead,
        grade="A1",
        mql=True,
        mql_reason="score 87 >= 70",
        account=account,
    )


async def assign(notifier: Notifier, lead_id: str, rep_id: str, **fields: Any) -> Assignment:
    """Store an assignment to the rep and enqueue its deliveries in the same transaction, as routing does."""
    assignment = Assignment(
        lead_id=lead_id,
        rep_id=rep_id,
        team_id="default",
        rule_path=["emea", "catch_all"],
        candidates=[rep_id],
        routing_version="3",
        **fields,
    )
    async with notifier.storage.sessions() as session:
        session.add(assignment)
        await service.enqueue(session=session, assigned=[(assignment, scored_lead(lead_id))], context=notifier.context)
        await session.commit()
        await session.refresh(assignment)
    return assignment


async def deliveries(storage: Storage, lead_id: str | None = None) -> list[Delivery]:
    async with storage.sessions() as session:
        query = select(Delivery).order_by(col(Delivery.created_at), col(Delivery.channel_index))
        if lead_id is not None:
            query = query.where(Delivery.lead_id == lead_id)
        return list((await session.exec(query.execution_options(populate_existing=True))).all())


def settled(storage: Storage, lead_id: str, status: DeliveryStatus) -> Callable[[], Awaitable[list[Delivery]]]:
    async def probe() -> list[Delivery]:
        rows = await deliveries(storage, lead_id)
        return rows if rows and all(row.status == status for row in rows) else []

    return probe


async def test_a_webhook_is_signed_per_standard_webhooks_and_tells_the_rep_everything(
    router_db: Storage, notifier: NotifierFactory, endpoint: FlakyServer
) -> None:
    running = await notifier()
    await put_rep(router_db, "rep-ada", webhook(endpoint, "/ada"))
    assignment = await assign(running, "lead-1", "rep-ada")

    [row] = await wait_until(settled(router_db, "lead-1", DeliveryStatus.DELIVERED), timeout=10, what="delivered")

    [request] = endpoint.to("/ada")
    webhook_id = f"msg_{assignment.id}_0"
    assert request.headers["webhook-id"] == webhook_id == row.webhook_id
    body = standardwebhooks.Webhook(WEBHOOK_SECRET).verify(request.body, request.headers)
    assert body["type"] == "lead.assigned"
    assert body["assignment_id"] == assignment.id
    assert body["rep_id"] == "rep-ada"
    assert body["lead"]["id"] == "lead-1"
    assert body["lead"]["company"] == "Acme"
    assert body["lead"]["email"] == "lead-1@acme.example"  # personal data is for the rep, in the payload only
    assert (body["grade"], body["score"], body["mql"]) == ("A1", 87, True)
    assert body["account"]["account_id"] == "acct-acme"
    assert (body["rule"], body["routing_version"], body["trigger"]) == ("catch_all", "3", "routed")
    assert "sla" in body
    assert body["sla"] is None
    assert (row.attempts, row.last_status_code, row.delivered_at is not None) == (1, 200, True)
    assert running.metric("leadrelay_notifications_total", channel="webhook", outcome="delivered") == 1
    assert running.metric("leadrelay_speed_to_lead_seconds_count") == 1
    assert running.metric("leadrelay_notification_attempt_seconds_count", channel="webhook") == 1


async def test_deliveries_another_replica_commits_wake_the_leading_job_at_once_on_postgresql(
    router_db: Storage, notifier: NotifierFactory, endpoint: FlakyServer, backend: str
) -> None:
    if backend != "postgres":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; on SQLite NOTIFY_MAX_SLEEP_SECONDS bounds the wait")
    leader = await notifier(start=False, notify_max_sleep_seconds=60)
    leader.start(listen=True)
    replica = await notifier(start=False)  # its consumer commits deliveries; its delivery job does not run
    await put_rep(router_db, "rep-ada", webhook(endpoint, "/ada"))

    async def listening() -> bool:
        async with router_db.sessions() as session:
            statement = text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE :listen"
            )
            rows = await session.exec(statement.bindparams(listen=f"LISTEN %{DELIVERIES_CHANNEL}%"))  # type: ignore[call-overload]
            return bool(rows.scalar_one())

    await wait_until(listening, timeout=10, what="the leading job to listen")
    await assign(replica, "lead-1", "rep-ada")

    # The leader sleeps up to a minute between looks: only the replica's NOTIFY wakes it this soon.
    await wait_until(settled(router_db, "lead-1", DeliveryStatus.DELIVERED), timeout=10, what="delivered")
    assert len(endpoint.to("/ada")) == 1


async def test_the_replica_leading_the_delivery_job_wakes_it_without_notifying_the_others(
    router_db: Storage, backend: str
) -> None:
    wake = DeliveryWake()
    with recorded_statements(router_db.engine) as statements:
        for leading in (False, True):
            wake.leading = leading
            wake.event.clear()
            async with router_db.sessions() as session:
                wake.on_commit(session)
                await session.commit()
            assert wake.event.is_set()  # this process's job is woken either way
    # A replica whose job does not run tells the leader through PostgreSQL; the leader tells no one.
    notifies = [statement for statement in statements if statement.startswith("NOTIFY")]
    assert notifies == ([f"NOTIFY {DELIVERIES_CHANNEL}"] if backend == "postgres" else [])


async def test_a_slack_channel_gets_a_message_with_the_same_context(
    router_db: Storage, notifier: NotifierFactory, endpoint: FlakyServer
) -> None:
    running = await notifier()
    await put_rep(router_db, "rep-ada", webhook(endpoint, "/ada"), {"kind": "slack", "url": endpoint.url("/slack")})
    assignment = await assign(running, "lead-1", "rep-ada")

    rows = await wait_until(settled(router_db, "lead-1", DeliveryStatus.DELIVERED), timeout=10, what="delivered")

    assert [(row.channel_index, row.channel_kind) for row in rows] == [(0, "webhook"), (1, "slack")]
    assert rows[1].webhook_id == f"msg_{assignment.id}_1"
    [request] = endpoint.to("/slack")
    message = httpx.Response(200, content=request.body).json()
    assert "Acme" in message["text"]
    assert "A1" in message["text"]
    shown = str(message["blocks"])
    assert "catch_all" in shown
    assert "acct-acme" in shown
    assert "http" not in shown
    # Speed-to-lead counts the assignment's first delivered channel only.
    assert running.metric("leadrelay_speed_to_lead_seconds_count") == 1


async def test_the_sla_deadline_is_awaited_briefly_and_sent_at_once_when_it_arrives(
    router_db: Storage, notifier: NotifierFactory, endpoint: FlakyServer
) -> None:
    running = await notifier(notify_sla_wait_seconds=60)
    await put_rep(router_db, "rep-ada", webhook(endpoint, "/ada"))
    assignment = await assign(running, "lead-1", "rep-ada")
    [waiting] = await deliveries(router_db, "lead-1")
    assert waiting.status == DeliveryStatus.PENDING
    assert endpoint.received == []

    due_at = utcnow() + timedelta(minutes=5)
    started = SlaStarted(
        lead_id="lead-1",
        obligation="first_response",
        assignment_id=assignment.id,
        rep_id="rep-ada",
        policy_version="1",
        started_at=utcnow(),
        due_at=due_at,
    )
    async with router_db.sessions() as session:
        await on_sla_started([new_event(started, source="leadrelay/sla-monitor")], session, context=running.context)
        await session.commit()

    # Woken by the commit: far sooner than the 60 s the delivery would otherwise wait.
    await wait_until(settled(router_db, "lead-1", DeliveryStatus.DELIVERED), timeout=5, what="delivered with its SLA")
    body = httpx.Response(200, content=endpoint.to("/ada")[0].body).json()
    assert body["sla"]["obligation"] == "first_response"
    assert datetime.fromisoformat(body["sla"]["due_at"]) == due_at


async def test_500s_then_200_is_retried_with_backoff_until_delivered(
    router_db: Storage, notifier: NotifierFactory, endpoint: FlakyServer
) -> None:
    endpoint.script["/ada"] = [Answer(500), Answer(503), Answer(502)]
    running = await notifier()
    await put_rep(router_db, "rep-ada", webhook(endpoint, "/ada"))
    assignment = await assign(running, "lead-1", "rep-ada")

    [row] = await wait_until(settled(router_db, "lead-1", DeliveryStatus.DELIVERED), timeout=10, what="delivered")

    assert (row.attempts, row.last_status_code, row.last_error) == (4, 200, None)
    requests = endpoint.to("/ada")
    assert len(requests) == 4
    assert {request.headers["webhook-id"] for request in requests} == {f"msg_{assignment.id}_0"}
    assert running.metric("leadrelay_notifications_total", channel="webhook", outcome="retried") == 3
    assert running.metric("leadrelay_notifications_total", channel="webhook", outcome="delivered") == 1


async def test_429_waits_as_long_as_retry_after_says(
    router_db: Storage, notifier: NotifierFactory, endpoint: FlakyServer
) -> None:
    endpoint.script["/ada"] = [Answer(429, {"Retry-After": "1"})]
    running = await notifier()
    await put_rep(router_db, "rep-ada", webhook(endpoint, "/ada"))
    await assign(running, "lead-1", "rep-ada")

    [row] = await wait_until(settled(router_db, "lead-1", DeliveryStatus.DELIVERED), timeout=10, what="delivered")

    first, second = endpoint.to("/ada")
    assert second.at - first.at >= 0.95  # the retry base is 0.02 s: only Retry-After explains the wait
    assert row.attempts == 2


async def test_the_pending_gauge_counts_a_delivery_waiting_for_its_retry_then_none(
    router_db: Storage, notifier: NotifierFactory, endpoint: FlakyServer
) -> None:
    endpoint.script["/ada"] = [Answer(429, {"Retry-After": "2"})]
    running = await notifier()
    await put_rep(router_db, "rep-ada", webhook(endpoint, "/ada"))
    await assign(running, "lead-1", "rep-ada")

    async def waiting_counted() -> bool:
        return len(endpoint.to("/ada")) == 1 and running.metric("leadrelay_notifications_pending") == 1

    await wait_until(waiting_counted, timeout=10, what="the refused delivery counted as pending")
    await wait_until(settled(router_db, "lead-1", DeliveryStatus.DELIVERED), timeout=10, what="delivered")

    async def none_counted() -> bool:
        return running.metric("leadrelay_notifications_pending") == 0

    await wait_until(none_counted, timeout=10, what="nothing pending once delivered")


async def test_410_disables_the_delivery_and_the_rep_channel_audited(
    router_db: Storage, notifier: NotifierFactory, endpoint: FlakyServer
) -> None:
    endpoint.script["/gone"] = [Answer(410)]
    running = await notifier()
    await put_rep(router_db, "rep-ada", webhook(endpoint, "/gone"), webhook(endpoint, "/ada"))
    await assign(running, "lead-1", "rep-ada")

    async def gone_disabled() -> bool:
        rows = await deliveries(router_db, "lead-1")
        return [row.status for row in rows] == [DeliveryStatus.DISABLED, DeliveryStatus.DELIVERED]

    await wait_until(gone_disabled, timeout=10, what="410 disabled, the other delivered")
    async with router_db.sessions() as session:
        rep = await session.get(Rep, "rep-ada")
        assert rep is not None
        assert [channel.get("disabled", False) for channel in rep.channels] == [True, False]
        entries = (await session.exec(select(AuditEntry).where(AuditEntry.action == "rep.channel_disabled"))).all()
    assert [(entry.target, entry.actor_key_id, entry.detail["channel"]) for entry in entries] == [("rep-ada", None, 0)]
    assert "127.0.0.1" not in str(entries[0].detail)
    assert running.metric("leadrelay_notifications_total", channel="webhook", outcome="disabled") == 1

    await assign(running, "lead-2", "rep-ada")
    rows = await wait_until(settled(router_db, "lead-2", DeliveryStatus.DELIVERED), timeout=10, what="delivered")
    assert [row.channel_index for row in rows] == [1]  # the disabled channel gets nothing new
    assert len(endpoint.to("/gone")) == 1


async def test_timeouts_are_retried(router_db: Storage, notifier: NotifierFactory, endpoint: FlakyServer) -> None:
    endpoint.script["/slow"] = [Answer(hang=3)]
    running = await notifier(notify_timeout_seconds=0.3)
    await put_rep(router_db, "rep-ada", webhook(endpoint, "/slow"))
    await assign(running, "lead-1", "rep-ada")

    [row] = await wait_until(settled(router_db, "lead-1", DeliveryStatus.DELIVERED), timeout=10, what="delivered")

    assert row.attempts == 2
    assert running.metric("leadrelay_notifications_total", channel="webhook", outcome="retried") == 1


async def test_after_the_horizon_a_failing_delivery_is_dead_and_counted(
    router_db: Storage, notifier: NotifierFactory, endpoint: FlakyServer
) -> None:
    endpoint.script["/down"] = [Answer(500)] * 1000
    running = await notifier(notify_horizon_seconds=3)
    await put_rep(router_db, "rep-ada", webhook(endpoint, "/down"))
    await assign(running, "lead-1", "rep-ada")

    [row] = await wait_until(settled(router_db, "lead-1", DeliveryStatus.DEAD), timeout=10, what="dead")

    assert row.attempts >= 2
    assert row.last_status_code == 500
    assert row.last_error == "HTTP 500"
    assert len(endpoint.to("/down")) == row.attempts
    assert running.metric("leadrelay_notifications_total", channel="webhook", outcome="dead") == 1


async def test_other_4xx_is_dead_at_once_and_a_connection_error_names_no_url(
    router_db: Storage, notifier: NotifierFactory, endpoint: FlakyServer
) -> None:
    endpoint.script["/bad"] = [Answer(400)]
    running = await notifier(notify_horizon_seconds=0.5)
    closed = f"http://127.0.0.1:{free_port()}/nobody"
    await put_rep(
        router_db, "rep-ada", webhook(endpoint, "/bad"), {"kind": "webhook", "url": closed, "secret": WEBHOOK_SECRET}
    )
    await assign(running, "lead-1", "rep-ada")

    rows = await wait_until(settled(router_db, "lead-1", DeliveryStatus.DEAD), timeout=10, what="dead")

    assert (rows[0].attempts, rows[0].last_status_code) == (1, 400)
    assert rows[1].last_status_code is None
    assert rows[1].last_error == "ConnectError"


async def test_a_delivered_notification_is_never_sent_again_after_restarts(
    router_db: Storage, notifier: NotifierFactory, endpoint: FlakyServer
) -> None:
    first = await notifier()
    await put_rep(router_db, "rep-ada", webhook(endpoint, "/ada"))
    await assign(first, "lead-1", "rep-ada")
    await wait_until(settled(router_db, "lead-1", DeliveryStatus.DELIVERED), timeout=10, what="delivered")
    await first.stop()

    for round_ in range(2):
        again = await notifier()
        await assign(again, f"lead-{round_ + 2}", "rep-ada")
        await wait_until(settled(router_db, f"lead-{round_ + 2}", DeliveryStatus.DELIVERED), timeout=10, what="next")
        await again.stop()

    ids = [request.headers["webhook-id"] for request in endpoint.to("/ada")]
    assert len(ids) == 3 == len(set(ids))


async def test_a_claimed_delivery_is_not_claimed_twice(router_db: Storage, notifier: NotifierFactory) -> None:
    running = await notifier(start=False)
    await put_rep(router_db, "rep-ada", {"kind": "webhook", "url": "https://crm.example/ada", "secret": WEBHOOK_SECRET})
    await assign(running, "lead-1", "rep-ada")
    await assign(running, "lead-2", "rep-ada")

    async with router_db.sessions() as session, session.begin():
        taken = await service.claim_due(session=session, limit=10, lease_seconds=60)
    async with router_db.sessions() as session, session.begin():
        again = await service.claim_due(session=session, limit=10, lease_seconds=60)

    assert [claimed.attempts for claimed in taken] == [1, 1]
    assert again == []
    # Of a round's outcomes, one recorded for an attempt that is no longer the row's changes nothing.
    by_lead = {claimed.payload["lead_id"]: claimed for claimed in taken}
    stale = service.Claimed(**{**by_lead["lead-1"].__dict__, "attempts": 7})
    delivered = [
        service.Finished(claimed, DeliveryStatus.DELIVERED, 200, None) for claimed in (stale, by_lead["lead-2"])
    ]
    async with router_db.sessions() as session, session.begin():
        assert await service.finish_round(session=session, outcomes=delivered) == {by_lead["lead-2"].id}
    [row] = await deliveries(router_db, "lead-1")
    assert row.status == DeliveryStatus.PENDING
    [row] = await deliveries(router_db, "lead-2")
    assert (row.status, row.last_status_code) == (DeliveryStatus.DELIVERED, 200)
    assert row.delivered_at is not None


async def test_routing_a_scored_lead_enqueues_and_queued_or_nurtured_decisions_tell_no_one(
    router_db: Storage, notifier: NotifierFactory, endpoint: FlakyServer
) -> None:
    running = await notifier()
    await put_rep(router_db, running.context.settings.default_rep_id, webhook(endpoint, "/default"))
    async with router_db.sessions() as session:
        event = new_event(scored_lead("lead-1"), source="leadrelay/scoring")
        await on_lead_scored([event], session, context=running.context)
        await session.commit()
    [row] = await wait_until(settled(router_db, "lead-1", DeliveryStatus.DELIVERED), timeout=10, what="delivered")
    assert row.rep_id == running.context.settings.default_rep_id

    for outcome in (Outcome.QUEUED, Outcome.NURTURED):
        await assign(running, f"lead-{outcome}", "rep-ada", outcome=outcome)
        assert await deliveries(router_db, f"lead-{outcome}") == []


async def test_the_delivery_log_shows_no_url_or_secret(
    router_db: Storage, notifier: NotifierFactory, endpoint: FlakyServer
) -> None:
    running = await notifier()
    await put_rep(router_db, "rep-ada", webhook(endpoint, "/ada"), {"kind": "slack", "url": endpoint.url("/slack")})
    assignment = await assign(running, "lead-1", "rep-ada")
    await wait_until(settled(router_db, "lead-1", DeliveryStatus.DELIVERED), timeout=10, what="delivered")
    async with router_db.sessions() as session:
        session.add(Assignment(lead_id="lead-queued", outcome=Outcome.QUEUED, team_id="default", routing_version="3"))
        await session.commit()

    app = FastAPI()
    install_problem_handlers(app)
    app.state.runtime = SimpleNamespace(
        sessions=router_db.sessions, settings=SimpleNamespace(secret_key=SecretStr(SECRET_KEY))
    )
    app.include_router(notifications_router)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {READER_KEY}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://router", headers=headers) as client:
        answer = await client.get("/v1/assignments/lead-1/deliveries")
        unknown = await client.get("/v1/assignments/lead-nobody/deliveries")
        queued = await client.get("/v1/assignments/lead-queued/deliveries")
        anonymous = await client.get("/v1/assignments/lead-1/deliveries", headers={"Authorization": ""})

    assert answer.status_code == 200
    log = answer.json()["deliveries"]
    assert [(entry["channel_kind"], entry["status"], entry["attempts"]) for entry in log] == [
        ("webhook", "delivered", 1),
        ("slack", "delivered", 1),
    ]
    assert log[0]["webhook_id"] == f"msg_{assignment.id}_0"
    assert log[0]["rep_id"] == "rep-ada"
    assert "127.0.0.1" not in answer.text
    assert "whsec" not in answer.text
    assert "payload" not in log[0]
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"
    assert queued.status_code == 200
    assert queued.json()["deliveries"] == []
    assert anonymous.status_code == 401


# Pure parts: backoff, Retry-After, verdicts.


@pytest.mark.parametrize("attempts", [1, 2, 3, 5, 10, 11, 40, 500])
def test_backoff_is_full_jitter_under_an_exponential_ceiling_capped(attempts: int) -> None:
    ceiling = min(900.0, 1.0 * 2 ** (attempts - 1))
    assert service.backoff_seconds(attempts, base=1.0, cap=900.0, rand=lambda: 0.0) == 0.0
    assert service.backoff_seconds(attempts, base=1.0, cap=900.0, rand=lambda: 0.999999) == pytest.approx(
        ceiling, rel=1e-5
    )
    for _ in range(200):
        assert 0.0 <= service.backoff_seconds(attempts, base=1.0, cap=900.0) <= ceiling


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
    assert service.retry_after_seconds("120", now=now) == 120.0
    assert service.retry_after_seconds("Fri, 27 Nov 2026 09:31:00 GMT", now=now) == 60.0
    assert service.retry_after_seconds("Fri, 27 Nov 2026 09:00:00 GMT", now=now) == 0.0
    assert service.retry_after_seconds("soon", now=now) is None
    assert service.retry_after_seconds(None, now=now) is None


@pytest.mark.parametrize(
    ("status_code", "retry_after", "status", "outcome"),
    [
        (200, None, DeliveryStatus.DELIVERED, "delivered"),
        (204, None, DeliveryStatus.DELIVERED, "delivered"),
        (410, None, DeliveryStatus.DISABLED, "disabled"),
        (400, None, DeliveryStatus.DEAD, "dead"),
        (401, None, DeliveryStatus.DEAD, "dead"),
        (404, None, DeliveryStatus.DEAD, "dead"),
        (301, None, DeliveryStatus.DEAD, "dead"),
        (408, None, DeliveryStatus.PENDING, "retried"),
        (429, "30", DeliveryStatus.PENDING, "retried"),
        (500, None, DeliveryStatus.PENDING, "retried"),
        (503, None, DeliveryStatus.PENDING, "retried"),
        (None, None, DeliveryStatus.PENDING, "retried"),
        (429, "90000", DeliveryStatus.DEAD, "dead"),  # asked to wait past the horizon
    ],
)
def test_each_answer_has_its_verdict(
    status_code: int | None, retry_after: str | None, status: DeliveryStatus, outcome: str
) -> None:
    now = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
    judged = verdict(
        status_code=status_code,
        retry_after=retry_after,
        attempts=1,
        created_at=now,
        now=now,
        settings=settings_of(notify_retry_base_seconds=1.0),
    )
    assert (judged.status, judged.outcome) == (status, outcome)
    if retry_after == "30":
        assert judged.next_attempt_at == now + timedelta(seconds=30)
    elif status is DeliveryStatus.PENDING:
        assert judged.next_attempt_at is not None
        assert now <= judged.next_attempt_at <= now + timedelta(seconds=1)


def test_past_the_horizon_a_retryable_answer_is_dead() -> None:
    created = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
    settings = settings_of(notify_horizon_seconds=86_400)
    judged = verdict(
        status_code=503,
        retry_after=None,
        attempts=30,
        created_at=created,
        now=created + timedelta(days=1),
        settings=settings,
    )
    assert judged.status is DeliveryStatus.DEAD


def test_a_reassignment_notification_says_why_and_who_had_it() -> None:
    previous = Assignment(lead_id="lead-1", rep_id="rep-bob", team_id="default", routing_version="3")
    again = Assignment(
        lead_id="lead-1",
        sequence=2,
        rep_id="rep-ada",
        team_id="default",
        rule_path=["emea"],
        routing_version="3",
        trigger="sla_breach",
        reason="first_response breached",
        previous_assignment_id=previous.id,
    )

    body = service.payload_of(again, scored_lead("lead-1"), previous=previous)
    message = slack_message(body)

    assert (body["type"], body["sequence"], body["trigger"]) == ("lead.assigned", 2, "sla_breach")
    assert (body["previous_assignment_id"], body["previous_rep_id"]) == (previous.id, "rep-bob")
    assert body["reason"] == "first_response breached"
    assert "sla_breach: first_response breached" in str(message["blocks"])
