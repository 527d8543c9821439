"""An unanswered lead moves on when its SLA breaches: the team's manager next, then the team's queue."""

from typing import Any

import httpx

from leadrelay.broker import EmbeddedBroker
from leadrelay.events import LeadAssigned, LeadQueued, Topic, parse_as
from leadrelay.testing import DEV_API_KEY, read_topic, wait_until
from tests.e2e.conftest import StackFactory


async def test_a_breached_lead_moves_to_the_manager_then_the_queue(
    broker: EmbeddedBroker, make_stack: StackFactory
) -> None:
    stack = await make_stack(broker, env={"FIRST_RESPONSE_SECONDS": "1", "TIMER_MAX_SLEEP_SECONDS": "0.2"})
    await stack.start()
    headers = {"Authorization": f"Bearer {DEV_API_KEY}"}
    async with httpx.AsyncClient(base_url=stack["router"].url, headers=headers, timeout=10.0) as router:
        # The built-in rule sends every lead to rep-default, else the default team's queue; with a
        # manager for that team, a breach of rep-default's assignment moves the lead to the manager.
        assert (await router.put("/v1/reps/rep-grace", json={"name": "Grace", "teams": []})).status_code == 201
        team = (await router.get("/v1/teams/default")).json()
        fields = ("name", "timezone", "working_hours")
        answer = await router.put(
            "/v1/teams/default", json={**{f: team[f] for f in fields}, "manager_rep_id": "rep-grace"}
        )
        assert answer.status_code == 200, answer.text

        lead_id = await stack.post_lead()

        async def settled() -> list[dict[str, Any]] | None:
            answer = await router.get(f"/v1/assignments/{lead_id}")
            history: list[dict[str, Any]] = answer.json()["history"] if answer.status_code == 200 else []
            return history if len(history) == 3 else None

        history = await wait_until(settled, timeout=60, what="two reassignments")

    assert [(row["sequence"], row["outcome"], row["rep_id"], row["trigger"]) for row in history] == [
        (1, "assigned", "rep-default", "routed"),
        (2, "assigned", "rep-grace", "sla_breach"),
        (3, "queued", None, "sla_breach"),
    ]
    records = await read_topic(broker.bootstrap_servers, Topic.LEADS_ASSIGNED, min_count=3)
    events = [record.value for record in records if record.key == lead_id.encode()]
    assigned = [parse_as(raw, LeadAssigned).data for raw in events if b'"lead.assigned"' in raw]
    queued = [parse_as(raw, LeadQueued).data for raw in events if b'"lead.queued"' in raw]
    assert [(event.sequence, event.rep_id, event.trigger) for event in assigned] == [
        (1, "rep-default", "routed"),
        (2, "rep-grace", "sla_breach"),
    ]
    reassigned = assigned[1]
    assert (reassigned.previous_assignment_id, reassigned.previous_rep_id, reassigned.reason) == (
        history[0]["id"],
        "rep-default",
        "first_response breached",
    )
    assert [(event.sequence, event.team_id, event.previous_assignment_id) for event in queued] == [
        (3, "default", history[1]["id"])
    ]
