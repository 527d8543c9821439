"""A lead travels intake -> scoring -> router -> sla-monitor and back into intake's read model."""

import httpx

from leadrelay.broker import EmbeddedBroker
from leadrelay.testing import wait_until
from tests.e2e.conftest import StackFactory


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
