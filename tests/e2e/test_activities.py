"""Activities and accounts through the real processes: a routed lead is accepted and contacted by its rep, and an
account is synced; the read model shows it, and the events are on the broker."""

from leadrelay.broker import EmbeddedBroker
from leadrelay.events import AccountChanged, LeadActivity, Topic, parse_as
from leadrelay.testing import Stack, read_topic, wait_until
from tests.e2e.conftest import StackFactory


async def test_an_activity_on_a_routed_lead_moves_its_stage_and_reaches_the_broker(
    broker: EmbeddedBroker, make_stack: StackFactory, backend: str
) -> None:
    stack = await make_stack(broker, backend=backend)
    await stack.start()
    lead_id = await stack.post_lead(phone="+44 20 7946 0000")
    routed = await stack.wait_routed(lead_id)
    rep_id = routed["owner_rep_id"]
    activities = f"/v1/leads/{lead_id}/activities"
    # A demo request makes this fit-B lead an MQL under the default ICP; then its rep takes it on.
    demo = await stack.api.post(activities, json={"type": "demo_requested"})
    assert demo.status_code == 201, demo.text
    await wait_until(lambda: _stage_is(stack, lead_id, "mql"), timeout=30, what="the demo request made an MQL")

    accepted = await stack.api.post(activities, json={"type": "accepted", "rep_id": rep_id})
    contacted = await stack.api.post(activities, json={"type": "contacted", "channel": "call", "rep_id": rep_id})
    again = await stack.api.post(activities, json={"type": "accepted", "rep_id": rep_id})

    assert (accepted.status_code, contacted.status_code) == (201, 201), (accepted.text, contacted.text)
    assert again.status_code == 409
    assert "stage sal" in again.json()["detail"]
    lead = await stack.lead(lead_id)
    assert lead["stage"] == "sal"
    timeline = lead["timeline"]
    assert isinstance(timeline, list)
    recorded = [entry for entry in timeline if entry["type"] == "lead.activity"]
    assert [entry["event_id"] for entry in recorded] == [
        demo.json()["id"],
        accepted.json()["id"],
        contacted.json()["id"],
    ]
    assert [entry["details"]["stage"] for entry in recorded] == ["lead", "sal", "sal"]

    records = await read_topic(broker.bootstrap_servers, Topic.LEADS_ACTIVITY, min_count=3)
    events = [parse_as(record.value, LeadActivity) for record in records if record.value is not None]
    assert [(event.id, event.subject, event.data.activity, event.data.stage) for event in events] == [
        (demo.json()["id"], lead_id, "demo_requested", "lead"),
        (accepted.json()["id"], lead_id, "accepted", "sal"),
        (contacted.json()["id"], lead_id, "contacted", "sal"),
    ]
    assert all(record.key == lead_id.encode() for record in records)


async def test_a_synced_account_is_announced_once_per_change(broker: EmbeddedBroker, make_stack: StackFactory) -> None:
    stack = await make_stack(broker)
    await stack.start("intake")
    account = {"name": "Analytical Engines Ltd", "domains": ["Analytical.Example"], "owner_rep_id": "rep-ada"}

    statuses = [(await stack.api.put("/v1/accounts/acc-1", json=account)).status_code for _ in range(2)]
    moved = await stack.api.put("/v1/accounts/acc-1", json={**account, "owner_rep_id": "rep-grace"})

    assert (statuses, moved.status_code) == ([201, 200], 200)
    # The relay publishes in commit order: a second announcement of version 1 would come before version 2.
    records = await read_topic(broker.bootstrap_servers, Topic.ACCOUNTS_CHANGED, min_count=2)
    changes = [parse_as(record.value, AccountChanged).data for record in records if record.value is not None]
    assert [(change.account_id, change.version, change.owner_rep_id, change.domain) for change in changes] == [
        ("acc-1", 1, "rep-ada", "analytical.example"),
        ("acc-1", 2, "rep-grace", "analytical.example"),
    ]


async def _stage_is(stack: Stack, lead_id: str, stage: str) -> bool:
    return (await stack.lead(lead_id))["stage"] == stage
