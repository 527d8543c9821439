"""Co-signed agreements through the real services: the demo keys sign an ICP on scoring and routing rules on router."""

import json

import httpx

from leadrelay.apikeys import DEFAULT_DEMO_MARKETING_KEY, DEFAULT_DEMO_SALES_KEY
from leadrelay.broker import EmbeddedBroker
from leadrelay.testing import DEV_API_KEY, read_topic
from tests.e2e.conftest import StackFactory

ICP = {
    "fit": [
        {"name": "target_country", "type": "region", "field": "country", "countries": ["GB", "DE"], "points": 40},
        {"name": "webinar", "type": "in", "field": "source", "values": ["webinar"], "points": 40},
    ],
    "engagement": {"points": {"demo_requested": 40}},
    "grades": {"fit": {"A": 80, "B": 60, "C": 40}, "engagement": {"1": 40, "2": 20, "3": 5}},
    "mql": {"any": [{"name": "good_fit", "fit_at_least": "B"}]},
}


def client(url: str, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=10.0)


async def test_demo_keys_co_sign_the_icp_and_a_new_version_supersedes_it(
    broker: EmbeddedBroker, make_stack: StackFactory, backend: str
) -> None:
    stack = await make_stack(broker, backend=backend)
    await stack.start()
    for key in (DEFAULT_DEMO_MARKETING_KEY, DEFAULT_DEMO_SALES_KEY):
        await stack.wait_key_known("scoring", key)
        await stack.wait_key_known("router", key)
    scoring = stack["scoring"].url
    async with (
        client(scoring, DEV_API_KEY) as dev,
        client(scoring, DEFAULT_DEMO_MARKETING_KEY) as marketing,
        client(scoring, DEFAULT_DEMO_SALES_KEY) as sales,
    ):
        assert (await dev.get("/v1/icp/active")).status_code == 404
        drafted = await dev.post("/v1/icp/versions", json={"document": ICP, "note": "first ICP"})
        assert drafted.status_code == 201, drafted.text
        assert (drafted.json()["version"], drafted.json()["status"]) == (1, "draft")
        assert (await dev.post("/v1/icp/versions/1/approvals")).status_code == 403  # ops does not sign the ICP

        signed = await marketing.post("/v1/icp/versions/1/approvals")
        assert (signed.status_code, signed.json()["status"]) == (200, "draft")
        signed = await sales.post("/v1/icp/versions/1/approvals", json={"note": "agreed in the pipeline review"})
        assert (signed.status_code, signed.json()["status"]) == (200, "active")
        assert (await sales.get("/v1/icp/active")).json()["version"] == 1

        exported = await marketing.get("/v1/icp/versions/1/export")
        assert exported.headers["content-type"].startswith("application/yaml")
        imported = await dev.post(
            "/v1/icp/versions:import", content=exported.content, headers={"Content-Type": "application/yaml"}
        )
        assert (imported.status_code, imported.json()["version"]) == (201, 2), imported.text
        assert (await dev.get("/v1/icp/versions/2/export")).content == exported.content
        for signer in (marketing, sales):
            assert (await signer.post("/v1/icp/versions/2/approvals")).status_code == 200
        versions = (await dev.get("/v1/icp/versions")).json()["versions"]
        assert [(v["version"], v["status"]) for v in versions] == [(2, "active"), (1, "superseded")]
        assert [entry["action"] for entry in versions[1]["history"]] == [
            "drafted",
            "approved",
            "approved",
            "activated",
            "superseded",
        ]
        assert versions[1]["history"][-1]["name"] == "demo-sales"

        bad = {**ICP, "fit": [{**ICP["fit"][0], "points": 1001}, ICP["fit"][1]]}
        refused = await dev.post("/v1/icp/versions", json={"document": bad})
        assert (refused.status_code, refused.headers["content-type"]) == (422, "application/problem+json")
        assert [error["pointer"] for error in refused.json()["errors"]] == ["/document/fit/0/points"]
        unreachable = {**ICP, "grades": {**ICP["grades"], "fit": {"A": 90, "B": 85, "C": 40}}}
        unreachable_answer = await dev.post("/v1/icp/versions", json={"document": unreachable})
        assert [error["pointer"] for error in unreachable_answer.json()["errors"]] == [
            "/document/mql/any/0/fit_at_least"
        ]

        audit = (await dev.get("/v1/audit", params={"limit": 50})).json()["entries"]
        assert [(entry["action"], entry["target"], entry["actor_team"]) for entry in reversed(audit)] == [
            ("agreement.drafted", "icp v1", "ops"),
            ("agreement.approved", "icp v1", "marketing"),
            ("agreement.approved", "icp v1", "sales"),
            ("agreement.activated", "icp v1", "sales"),
            ("agreement.drafted", "icp v2", "ops"),
            ("agreement.approved", "icp v2", "marketing"),
            ("agreement.approved", "icp v2", "sales"),
            ("agreement.superseded", "icp v1", "sales"),
            ("agreement.activated", "icp v2", "sales"),
        ]

    records = await read_topic(broker.bootstrap_servers, "leadrelay.agreements", min_count=9)
    published = [json.loads(record.value) for record in records if record.key == b"icp"]
    assert [(event["type"], event["data"]["version"]) for event in published] == [
        ("agreement.drafted", 1),
        ("agreement.approved", 1),
        ("agreement.approved", 1),
        ("agreement.activated", 1),
        ("agreement.drafted", 2),
        ("agreement.approved", 2),
        ("agreement.approved", 2),
        ("agreement.superseded", 1),
        ("agreement.activated", 2),
    ]
    assert {event["source"] for event in published} == {"leadrelay/scoring"}

    router = stack["router"].url
    rules = {"rules": [{"name": "everyone", "when": "always", "action": {"type": "queue", "team": "team-inbound"}}]}
    async with client(router, DEV_API_KEY) as dev, client(router, DEFAULT_DEMO_SALES_KEY) as sales:
        team = {"name": "Inbound", "timezone": "UTC", "working_hours": {}}
        assert (await dev.put("/v1/teams/team-inbound", json=team)).status_code in (200, 201)  # rules name known teams
        assert (await dev.post("/v1/routing/versions", json={"document": rules})).status_code == 201
        active = await sales.post("/v1/routing/versions/1/approvals")  # routing: sales or ops alone suffices
        assert (active.status_code, active.json()["status"], active.json()["required"]) == (
            200,
            "active",
            {"any_of": ["sales", "ops"]},
        )
