"""A lead travels intake -> scoring -> router -> sla-monitor and back into intake's read model."""

import json
from pathlib import Path
from typing import Any

import httpx

from leadrelay.broker import EmbeddedBroker
from leadrelay.testing import DEV_API_KEY, ReceiverProcess, wait_until
from tests.e2e.conftest import StackFactory

RECEIVER_SECRET = "whsec_" + "dGVzdF9yZWNlaXZlcl9zZWNyZXRfMDEyMzQ1Njc4OQ=="


async def test_posted_lead_shows_up_assigned_with_a_deadline(
    broker: EmbeddedBroker, make_stack: StackFactory, backend: str
) -> None:
    stack = await make_stack(broker, backend=backend)
    await stack.start()

    lead_id = await stack.post_lead(email="Ada@Analytical.Example", phone="+44 20 7946 0000", source="webinar")
    lead = await stack.wait_routed(lead_id)

    assert lead["email"] == "ada@analytical.example"
    assert lead["icp_version"] == "default"  # no ICP signed yet
    # The default ICP: a CTO (executive, 25) at a named company (10) is fit 35, grade B; with no
    # engagement yet (band 4) the MQL rule (fit B and engagement 2, or a demo request) is not met.
    assert (lead["grade"], lead["fit"], lead["engagement"], lead["mql"]) == ("B4", 35, 0, False)
    assert lead["stage"] == "lead"
    assert lead["owner_rep_id"] == "rep-default"
    assert lead["sla_state"] == "running"
    timeline = lead["timeline"]
    assert isinstance(timeline, list)
    assert [entry["type"] for entry in timeline][:2] == ["lead.received", "lead.scored"]
    assert sorted(entry["type"] for entry in timeline) == [
        "lead.assigned",
        "lead.received",
        "lead.scored",
        "sla.started",
    ]
    scored = next(entry for entry in timeline if entry["type"] == "lead.scored")
    assert scored["details"]["icp_version"] == "default"
    assert scored["details"]["score"] == lead["score"]


async def test_the_rep_is_told_of_each_lead_with_a_signed_notification_and_its_deadline(
    broker: EmbeddedBroker, make_stack: StackFactory, tmp_path: Path
) -> None:
    # The router process sends on the event loop the services run on, to the endpoint `make run` starts.
    receiver = ReceiverProcess(tmp_path, "--secret", RECEIVER_SECRET, "--json")
    try:
        # Each notification waits for its SLA deadline (sla.started brings it forward as soon as it comes).
        stack = await make_stack(broker, env={"NOTIFY_SLA_WAIT_SECONDS": "30"})
        await stack.start()
        await receiver.wait_listening()
        channel = {"kind": "webhook", "url": f"{receiver.url}/reps/rep-default", "secret": RECEIVER_SECRET}
        rep = {"name": "Default rep", "teams": ["default"], "channels": [channel]}
        headers = {"Authorization": f"Bearer {DEV_API_KEY}"}
        async with httpx.AsyncClient(base_url=stack["router"].url, headers=headers, timeout=10) as router:
            assert (await router.put("/v1/reps/rep-default", json=rep)).status_code in (200, 201)
            lead_ids = [await stack.post_lead(email=f"lead{n}@analytical.example") for n in range(3)]

            async def everyone_told() -> dict[str, dict[str, Any]] | None:
                notices = [json.loads(line) for line in receiver.lines() if line.startswith("{")]
                told = {notice["lead_id"]: notice for notice in notices if notice["lead_id"] in lead_ids}
                return told if len(told) == len(lead_ids) else None

            told = await wait_until(everyone_told, timeout=60, what=f"the rep told of every lead\n{stack.logs()}")
            for lead_id in lead_ids:
                notice = told[lead_id]
                assert (notice["verified"], notice["type"], notice["rep_id"]) == (True, "lead.assigned", "rep-default")
                lead = await stack.wait_routed(lead_id)
                assert notice["sla_due_at"] is not None
                assert notice["sla_due_at"][:19] == str(lead["sla_due_at"])[:19]
                log = (await router.get(f"/v1/assignments/{lead_id}/deliveries")).json()["deliveries"]
                assert [(delivery["status"], delivery["attempts"]) for delivery in log] == [("delivered", 1)]
        assert "analytical.example" not in receiver.out.read_text()
    finally:
        receiver.kill()


async def test_no_personal_data_in_logs_or_metrics(broker: EmbeddedBroker, make_stack: StackFactory) -> None:
    stack = await make_stack(broker, env={"LOG_LEVEL": "DEBUG"})
    await stack.start()
    personal = {
        "email": "grace.hopper@navy.example",
        "first_name": "Grace",
        "last_name": "Hopperova",
        "phone": "+1 555 0100 777",
    }

    await stack.wait_routed(await stack.post_lead(**personal))
    bad = await stack.api.post("/v1/leads", json={**personal, "email": "grace.hopper-at-navy.example"})
    assert bad.status_code == 422

    exposed = [stack.logs()]
    async with httpx.AsyncClient() as client:
        exposed += [(await client.get(f"{service.url}/metrics")).text for service in stack.services.values()]
    await stack.stop()
    exposed += [service.log_path.read_text() for service in stack.services.values()]
    for text in exposed:
        for value in (*personal.values(), "grace.hopper-at-navy.example"):
            assert value.lower() not in text.lower(), value


async def test_unanswered_lead_breaches_its_sla(broker: EmbeddedBroker, make_stack: StackFactory) -> None:
    stack = await make_stack(broker, env={"FIRST_RESPONSE_SECONDS": "1", "TIMER_MAX_SLEEP_SECONDS": "0.2"})
    await stack.start()

    lead_id = await stack.post_lead()

    async def breached() -> dict[str, object] | None:
        lead = await stack.lead(lead_id)
        return lead if lead["sla_state"] == "breached" else None

    lead = await wait_until(breached, timeout=30, what="the SLA to be breached")
    timeline = lead["timeline"]
    assert isinstance(timeline, list)
    assert [entry["type"] for entry in timeline].count("sla.breached") == 1
