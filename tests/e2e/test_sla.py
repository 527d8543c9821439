"""The co-signed SLA through the real services: a lead's obligations start on assignment, warn, breach or are met."""

from collections import Counter
from typing import Any

import httpx

from leadrelay.apikeys import DEFAULT_DEMO_MARKETING_KEY, DEFAULT_DEMO_SALES_KEY
from leadrelay.broker import EmbeddedBroker
from leadrelay.events import Topic, parse_event
from leadrelay.testing import DEV_API_KEY, read_topic, wait_until
from tests.e2e.conftest import StackFactory

POLICY = {
    "obligations": [
        {
            "name": "accept",
            "met_by": ["accepted"],
            "clock": "wall",
            "targets": [{"within": "4s"}],
            "warn_at": 0.5,
            "escalation": ["remind"],
            "stages": ["lead", "mql"],
        },
        {
            "name": "first_touch",
            "met_by": ["contacted"],
            "clock": "wall",
            "targets": [{"within": "10m"}],
            "warn_at": 0.8,
            "escalation": ["notify_manager"],
        },
    ]
}


def client(url: str, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=10.0)


async def test_a_signed_sla_warns_and_breaches_one_obligation_and_sees_the_other_met(
    broker: EmbeddedBroker, make_stack: StackFactory
) -> None:
    stack = await make_stack(broker, env={"TIMER_MAX_SLEEP_SECONDS": "0.2"})
    await stack.start()
    for key in (DEFAULT_DEMO_MARKETING_KEY, DEFAULT_DEMO_SALES_KEY):
        await stack.wait_key_known("sla-monitor", key)
    sla_url = stack["sla-monitor"].url
    async with (
        client(sla_url, DEV_API_KEY) as dev,
        client(sla_url, DEFAULT_DEMO_MARKETING_KEY) as marketing,
        client(sla_url, DEFAULT_DEMO_SALES_KEY) as sales,
    ):
        drafted = await dev.post("/v1/sla/versions", json={"document": POLICY, "note": "short windows for a test"})
        assert drafted.status_code == 201, drafted.text
        assert (await marketing.post("/v1/sla/versions/1/approvals")).status_code == 200
        signed = await sales.post("/v1/sla/versions/1/approvals")
        assert (signed.status_code, signed.json()["status"]) == (200, "active"), signed.text

        lead_id = await stack.post_lead()
        lead = await stack.wait_routed(lead_id)
        contacted = await stack.api.post(
            f"/v1/leads/{lead_id}/activities",
            json={"type": "contacted", "channel": "call", "rep_id": lead["owner_rep_id"]},
        )
        assert contacted.status_code in (200, 201), contacted.text

        async def settled() -> dict[str, dict[str, Any]] | None:
            answer = await dev.get(f"/v1/sla/leads/{lead_id}")
            if answer.status_code != 200:
                return None
            obligations = {row["obligation"]: row for row in answer.json()["obligations"]}
            done = obligations.get("accept", {}).get("status") == "breached"
            return obligations if done and obligations.get("first_touch", {}).get("status") == "met" else None

        obligations = await wait_until(settled, timeout=60, what="accept breached and first_touch met")

    accept = obligations["accept"]
    assert (accept["policy_version"], accept["clock"]) == ("1", "wall")
    assert accept["warned_at"] is not None
    assert accept["warned_at"] <= accept["closed_at"]

    records = await read_topic(broker.bootstrap_servers, Topic.SLA_EVENTS, min_count=5)
    events = [parse_event(record.value) for record in records if record.key == lead_id.encode()]
    kinds = Counter((event.type, getattr(event.data, "obligation", None)) for event in events)
    assert kinds == {
        ("sla.started", "accept"): 1,
        ("sla.started", "first_touch"): 1,
        ("sla.warning", "accept"): 1,
        ("sla.breached", "accept"): 1,
        ("sla.met", "first_touch"): 1,
    }
    assert len({event.id for event in events}) == len(events)
    breached = next(event.data for event in events if event.type == "sla.breached")
    assert breached.model_dump()["escalation"] == ["remind"]
    assert breached.model_dump()["breached_at"] >= breached.model_dump()["due_at"]  # never early
