"""Scoring through the real processes and broker: a signed ICP re-scores open leads, and an engagement that
crosses the MQL line makes one MQL transition however often its event is delivered."""

from typing import Any

import httpx

from leadrelay.apikeys import DEFAULT_DEMO_MARKETING_KEY, DEFAULT_DEMO_SALES_KEY
from leadrelay.broker import EmbeddedBroker
from leadrelay.events import LeadActivity, LeadScored, Topic, parse_as
from leadrelay.testing import DEV_API_KEY, Stack, metric_value, produce, read_to_end, wait_until
from tests.e2e.conftest import StackFactory


def _icp(*mql: dict[str, Any]) -> dict[str, Any]:
    """British leads fit (grade A); a demo request is the one engagement that counts (grade 1)."""
    return {
        "fit": [{"name": "british", "type": "in", "field": "country", "values": ["GB"], "points": 40}],
        "engagement": {"points": {"demo_requested": 50}, "half_life_days": None},
        "grades": {"fit": {"A": 40, "B": 30, "C": 10}, "engagement": {"1": 50, "2": 30, "3": 10}},
        "mql": {"any": list(mql)},
    }


FIT_AND_ENGAGED = _icp({"name": "fit_and_engaged", "fit_at_least": "A", "engagement_at_least": 1})
FIT_ALONE = _icp({"name": "fit", "fit_at_least": "A"})


async def _sign(stack: Stack, document: dict[str, Any]) -> int:
    """Draft an ICP version (ops) and have marketing and sales approve it; returns the version, now active."""
    for key in (DEFAULT_DEMO_MARKETING_KEY, DEFAULT_DEMO_SALES_KEY):
        await stack.wait_key_known("scoring", key)
    async with httpx.AsyncClient(base_url=stack["scoring"].url, timeout=10.0) as client:
        drafted = await client.post("/v1/icp/versions", json={"document": document}, headers=_auth(DEV_API_KEY))
        assert drafted.status_code == 201, drafted.text
        version: int = drafted.json()["version"]
        for key in (DEFAULT_DEMO_MARKETING_KEY, DEFAULT_DEMO_SALES_KEY):
            approved = await client.post(f"/v1/icp/versions/{version}/approvals", headers=_auth(key))
            assert approved.status_code == 200, approved.text
        assert approved.json()["status"] == "active"
    return version


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _scores(broker: EmbeddedBroker, lead_id: str) -> list[LeadScored]:
    records = await read_to_end(broker.bootstrap_servers, Topic.LEADS_SCORED)
    events = [parse_as(record.value, LeadScored).data for record in records if record.value is not None]
    return [event for event in events if event.lead_id == lead_id]


async def _wait_scores(broker: EmbeddedBroker, lead_id: str, count: int, what: str) -> list[LeadScored]:
    async def enough() -> list[LeadScored] | None:
        scores = await _scores(broker, lead_id)
        return scores if len(scores) >= count else None

    return await wait_until(enough, timeout=30, what=what)


async def test_an_activation_rescores_an_open_lead_and_its_new_mql_is_announced(
    broker: EmbeddedBroker, make_stack: StackFactory
) -> None:
    stack = await make_stack(broker)
    await stack.start()
    assert await _sign(stack, FIT_AND_ENGAGED) == 1
    lead_id = await stack.post_lead(country="GB")
    (received,) = await _wait_scores(broker, lead_id, 1, "the lead scored under v1")
    assert (received.icp_version, received.grade, received.mql, received.stage) == ("1", "A4", False, "lead")

    assert await _sign(stack, FIT_ALONE) == 2

    scores = await _wait_scores(broker, lead_id, 2, "the lead re-scored under v2")
    rescored = scores[1]
    assert (rescored.trigger, rescored.icp_version, rescored.grade) == ("icp_activated", "2", "A4")
    assert (rescored.mql, rescored.became_mql, rescored.stage) == (True, True, "mql")
    assert (rescored.mql_reason or "").startswith("fit")
    assert rescored.lead.lead_id == lead_id
    scoring = stack["scoring"].url
    assert await metric_value(scoring, "leadrelay_leads_rescored_total") >= 1
    assert await metric_value(scoring, "leadrelay_mql_transitions_total", {"source": "api"}) == 1
    await stack.wait_routed(lead_id)


async def test_an_engagement_crossing_the_line_makes_one_mql_even_when_its_event_is_delivered_again(
    broker: EmbeddedBroker, make_stack: StackFactory
) -> None:
    stack = await make_stack(broker)
    await stack.start()
    await _sign(stack, FIT_AND_ENGAGED)
    lead_id = await stack.post_lead(country="GB")
    await _wait_scores(broker, lead_id, 1, "the lead scored")

    posted = await stack.api.post(f"/v1/leads/{lead_id}/activities", json={"type": "demo_requested"})
    assert posted.status_code == 201, posted.text
    activities = await read_to_end(broker.bootstrap_servers, Topic.LEADS_ACTIVITY)
    (raw,) = [r.value for r in activities if r.value and parse_as(r.value, LeadActivity).id == posted.json()["id"]]
    await produce(broker.bootstrap_servers, Topic.LEADS_ACTIVITY, [(lead_id, raw), (lead_id, raw)])

    duplicates = {"topic": Topic.LEADS_ACTIVITY.value, "type": "lead.activity", "outcome": "duplicate"}

    async def both_copies_seen() -> bool:
        return await metric_value(stack["scoring"].url, "leadrelay_events_consumed_total", duplicates) >= 2

    await wait_until(both_copies_seen, timeout=30, what="scoring to see both extra copies")
    scores = await _wait_scores(broker, lead_id, 2, "the engagement re-scored the lead")
    assert [(s.trigger, s.mql, s.became_mql) for s in scores] == [
        ("received", False, False),
        ("engagement", True, True),
    ], stack.logs()
    assert (scores[1].engagement, scores[1].grade, scores[1].stage) == (50, "A1", "mql")
