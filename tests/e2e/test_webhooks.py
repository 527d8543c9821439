"""A signed HubSpot batch, through real processes and the real broker, becomes routed leads."""

import httpx

from leadrelay.broker import EmbeddedBroker
from services.intake.tests.webhook_signing import body_of, hubspot_v3
from tests.e2e.conftest import StackFactory

CLIENT_SECRET = "e2e-hubspot-client-secret-0123456789"


def _batch(*emails: str) -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    for n, email in enumerate(emails, start=1):
        common = {"subscriptionId": 12345, "portalId": 62515, "occurredAt": 1564113600000, "attemptNumber": 0,
                  "objectId": 500 + n, "changeSource": "CRM", "appId": 54321}  # fmt: skip
        events += [
            {**common, "eventId": 10 * n, "subscriptionType": "contact.creation", "changeFlag": "NEW"},
            {**common, "eventId": 10 * n + 1, "subscriptionType": "contact.propertyChange",
             "propertyName": "email", "propertyValue": email},
            {**common, "eventId": 10 * n + 2, "subscriptionType": "contact.propertyChange",
             "propertyName": "company", "propertyValue": "Analytical Engines Ltd"},
        ]  # fmt: skip
    return events


async def test_a_signed_hubspot_batch_becomes_routed_leads(broker: EmbeddedBroker, make_stack: StackFactory) -> None:
    stack = await make_stack(broker)
    await stack.start()
    configured = await stack.api.put("/v1/sources/hubspot-main", json={"kind": "hubspot", "secrets": [CLIENT_SECRET]})
    assert configured.status_code == 201, configured.text

    emails = ["ada@analytical.example", "grace@navy.example", "edsger@eindhoven.example"]
    body = body_of(_batch(*emails))
    url = f"{stack['intake'].url}/v1/webhooks/hubspot-main"
    async with httpx.AsyncClient(timeout=10.0) as sender:  # no API key: the signature authenticates
        accepted = await sender.post(url, content=body, headers=hubspot_v3(CLIENT_SECRET, body, uri=url))
        assert accepted.status_code == 202, accepted.text
        lead_ids = accepted.json()["lead_ids"]
        assert len(lead_ids) == 3

        routed = [await stack.wait_routed(lead_id) for lead_id in lead_ids]
        assert [lead["email"] for lead in routed] == emails
        assert {lead["source"] for lead in routed} == {"hubspot-main"}
        assert all(lead["owner_rep_id"] for lead in routed)

        # HubSpot retries with a new timestamp: the same body is a replay and changes nothing.
        again = await sender.post(url, content=body, headers=hubspot_v3(CLIENT_SECRET, body, uri=url))
        assert again.status_code == 200, again.text
        assert again.json() == {"lead_ids": lead_ids}
        forged = await sender.post(url, content=body, headers=hubspot_v3("not-the-client-secret-000", body, uri=url))
        assert forged.status_code == 401

    listed = await stack.api.get("/v1/sources")
    assert CLIENT_SECRET not in listed.text
    await stack.stop()
    assert CLIENT_SECRET not in stack.logs()
    for service in stack.services.values():
        assert CLIENT_SECRET not in service.log_path.read_text()
