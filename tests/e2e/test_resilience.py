"""Nothing accepted is lost: broker outages, redeliveries, poison messages, killed workers, restarts."""

import asyncio
import signal

import asyncpg
import httpx
import pytest
from aiokafka.structs import ConsumerRecord
from sqlalchemy.engine import make_url

from leadrelay.broker import EmbeddedBroker
from leadrelay.events import LeadReceived, LeadScored, ScoreCriterion, Topic, dlq_topic, new_event, utcnow
from leadrelay.stages import LeadStage
from leadrelay.testing import count_rows, free_port, metric_value, produce, read_to_end, read_topic, wait_until
from tests.e2e.conftest import StackFactory


def _subjects(records: list[ConsumerRecord[bytes, bytes]]) -> list[str]:
    return [(record.key or b"").decode() for record in records]


async def test_leads_accepted_while_the_broker_is_down_are_published_when_it_returns(make_stack: StackFactory) -> None:
    broker = EmbeddedBroker(free_port())  # its port is known, but nothing listens yet
    stack = await make_stack(broker)
    await stack.start("intake")
    try:
        lead_ids = [await stack.post_lead(email=f"lead{i}@analytical.example") for i in range(20)]
        readiness = await stack.api.get(f"{stack['intake'].url}/readyz")
        assert readiness.status_code == 503
        assert readiness.json()["checks"]["broker"] == "unreachable"

        broker.start()

        records = await read_topic(broker.bootstrap_servers, Topic.LEADS_RECEIVED, min_count=20)
        assert sorted(set(_subjects(records))) == sorted(lead_ids)
        await wait_until(
            lambda: _outbox_empty(stack.database_urls["intake"]), timeout=10, what="intake's outbox to drain"
        )
    finally:
        await stack.stop()
        broker.stop()


async def _outbox_empty(database_url: str) -> bool:
    return await count_rows(database_url, "outbox") == 0


def _scored_event(lead_id: str) -> bytes:
    lead = LeadReceived(lead_id=lead_id, email="ada@analytical.example", source="api", received_at=utcnow())
    scored = LeadScored(
        lead_id=lead_id,
        score=80,
        stage=LeadStage.MQL,
        icp_version="test",
        explanation=[ScoreCriterion(criterion="test", points=80, reason="test")],
        scored_at=utcnow(),
        lead=lead,
    )
    return new_event(scored, source="test").to_bytes()


async def test_redelivered_event_changes_nothing_and_poison_is_dead_lettered(
    broker: EmbeddedBroker, make_stack: StackFactory
) -> None:
    stack = await make_stack(broker)
    await stack.start("router")
    router = stack["router"]
    duplicate = _scored_event("lead-a")
    bad_payload = _scored_event("lead-b").replace(b'"score":80', b'"score":"eighty"')

    await produce(
        broker.bootstrap_servers,
        Topic.LEADS_SCORED,
        [
            ("lead-a", duplicate),
            ("lead-a", duplicate),
            ("lead-b", b"{this is not json"),
            ("lead-b", bad_payload),
            ("lead-b", _scored_event("lead-b")),
        ],
    )

    await wait_until(
        lambda: metric_value(router.url, "leadrelay_events_consumed_total", {"outcome": "processed"}),
        timeout=30,
        what="router to process events",
    )
    await wait_until(
        lambda: _at_least(router.url, "leadrelay_events_consumed_total", {"outcome": "processed"}, 2),
        timeout=30,
        what="both leads",
    )
    await wait_until(
        lambda: _at_least(router.url, "leadrelay_events_consumed_total", {"outcome": "duplicate"}, 1),
        timeout=30,
        what="the duplicate",
    )
    await wait_until(lambda: _outbox_empty(stack.database_urls["router"]), timeout=10, what="router's outbox to drain")

    assert await count_rows(stack.database_urls["router"], "assignment") == 2
    assigned = await read_to_end(broker.bootstrap_servers, Topic.LEADS_ASSIGNED)
    assert sorted(_subjects(assigned)) == ["lead-a", "lead-b"]

    dead = await read_topic(broker.bootstrap_servers, dlq_topic(Topic.LEADS_SCORED), min_count=2)
    assert [record.value for record in dead] == [b"{this is not json", bad_payload]
    for record in dead:
        headers = {name: value.decode() for name, value in record.headers}
        assert headers["dlq_original_topic"] == Topic.LEADS_SCORED
        assert headers["dlq_error_type"] == "ValidationError"
        assert headers["dlq_consumer_group"] == "leadrelay-router"
    assert await metric_value(router.url, "leadrelay_events_dead_lettered_total") == 2


async def _at_least(url: str, name: str, labels: dict[str, str], minimum: float) -> bool:
    return await metric_value(url, name, labels) >= minimum


@pytest.mark.parametrize("worker", ["scoring", "router", "sla-monitor"])
async def test_sigkilled_worker_loses_nothing(broker: EmbeddedBroker, make_stack: StackFactory, worker: str) -> None:
    stack = await make_stack(broker)
    await stack.start()
    lead_ids = [await stack.post_lead(email="warm-up@analytical.example")]
    await stack.wait_routed(lead_ids[0])

    async def post_stream() -> None:
        for i in range(30):
            lead_ids.append(await stack.post_lead(email=f"lead{i}@analytical.example"))

    posting = asyncio.create_task(post_stream())

    async def streaming() -> bool:
        return len(lead_ids) > 10

    await wait_until(streaming, timeout=30, what="the stream to be under way")
    await stack[worker].kill()  # no shutdown code runs; more leads keep arriving
    await posting
    stack[worker].start()
    await stack[worker].wait_healthy()

    for lead_id in lead_ids:
        lead = await stack.wait_routed(lead_id, timeout=60)
        types = [entry["type"] for entry in lead["timeline"]]  # type: ignore[union-attr]
        assert types.count("lead.assigned") == 1, (lead_id, types)
        assert types.count("sla.started") == 1, (lead_id, types)
    assert await count_rows(stack.database_urls["router"], "assignment") == len(lead_ids) == 31
    assert await count_rows(stack.database_urls["sla-monitor"], "sla_timer") == 31


async def test_restarted_stack_keeps_leads_and_finishes_in_flight_ones(
    broker: EmbeddedBroker, make_stack: StackFactory
) -> None:
    stack = await make_stack(broker)
    await stack.start()
    settled = await stack.post_lead(email="settled@analytical.example")
    await stack.wait_routed(settled)

    await stack.stop("router")  # the next lead gets scored but never routed before the stack stops
    in_flight = await stack.post_lead(email="in-flight@analytical.example")

    async def scored() -> bool:
        return (await stack.lead(in_flight))["score"] is not None

    await wait_until(scored, timeout=30, what="the in-flight lead to be scored")
    await stack.stop()
    broker.stop()  # the embedded broker forgets everything
    broker.start()
    await stack.start()

    routed = await stack.wait_routed(in_flight, timeout=60)
    assert routed["owner_rep_id"] == "rep-default"
    kept = await stack.lead(settled)
    kept_types = [entry["type"] for entry in kept["timeline"]]  # type: ignore[union-attr]
    assert kept_types.count("lead.assigned") == 1
    assert kept["owner_rep_id"] == "rep-default"


@pytest.mark.postgres
async def test_database_outage_answers_503_then_recovers(
    broker: EmbeddedBroker, make_stack: StackFactory, postgres_admin_dsn: str
) -> None:
    stack = await make_stack(broker, backend="postgres")
    await stack.start("intake")
    database = make_url(stack.database_urls["intake"]).database
    admin = await asyncpg.connect(postgres_admin_dsn)
    try:
        before = await stack.post_lead(email="before@analytical.example")
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", database)

        async def unavailable() -> httpx.Response | None:
            response = await stack.api.post("/v1/leads", json={"email": "during@analytical.example"})
            return response if response.status_code == 503 else None

        response = await wait_until(unavailable, timeout=30, what="intake to notice the database is gone")
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["retry-after"] == "5"
        assert (await stack.api.get(f"/v1/leads/{before}")).status_code == 503
    finally:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        await admin.close()

    after = await stack.post_lead(email="after@analytical.example")
    assert (await stack.lead(before))["email"] == "before@analytical.example"
    records = await read_topic(broker.bootstrap_servers, Topic.LEADS_RECEIVED, min_count=2)
    assert {before, after} <= set(_subjects(records))


async def test_every_service_stops_promptly_and_cleanly_on_sigterm(
    broker: EmbeddedBroker, make_stack: StackFactory
) -> None:
    stack = await make_stack(broker, env={"INTAKE_WORKERS": "2"})
    await stack.start()
    await stack.wait_routed(await stack.post_lead())

    async def stop(name: str) -> tuple[str, int | None, float]:
        started = asyncio.get_running_loop().time()
        code = await stack[name].stop(timeout=10)  # a process still running then is killed: code -9
        return name, code, asyncio.get_running_loop().time() - started

    stopped = await asyncio.gather(*(stop(name) for name in stack.services))

    for name, code, _seconds in stopped:
        assert code in (0, -signal.SIGTERM), f"{name} did not stop by itself within 10 s (exit code {code})"
    logs = {name: process.log_path.read_text() for name, process in stack.services.items()}
    assert logs["intake"].count('"service stopped"') == 2  # both workers
    assert all('"service stopped"' in log for log in logs.values())
    assert all("did not stop in time" not in log for log in logs.values())
