"""The leads API over HTTP, in process: answers, problems and headers of every leads endpoint."""

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from intake.config import IntakeSettings
from intake.main import create_app
from leadrelay.broker import EmbeddedBroker
from leadrelay.testing import FAST_SETTINGS

DatabaseFactory = Callable[[str, str], Awaitable[str]]  # the root conftest's make_database


@pytest.fixture
async def client(
    broker: EmbeddedBroker, make_database: DatabaseFactory, backend: str
) -> AsyncIterator[httpx.AsyncClient]:
    """An intake app on the test's backend, started, with the development key."""
    # No .env file: a developer's settings must not leak into the test.
    settings = IntakeSettings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=await make_database(backend, "intake"),
        kafka_bootstrap_servers=broker.bootstrap_servers,
        **FAST_SETTINGS,
    )
    app = create_app(settings, CollectorRegistry())
    headers = {"Authorization": f"Bearer {settings.dev_api_key}"}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake", headers=headers) as http,
    ):
        yield http


def _fields(problem: dict[str, Any]) -> set[str]:
    return {error["field"] for error in problem["errors"]}


async def test_a_lead_is_accepted_normalised_and_read_back(client: httpx.AsyncClient) -> None:
    accepted = await client.post(
        "/v1/leads",
        json={"email": " Ada@Example.com", "country": "United Kingdom", "phone": "020 7946 0000", "crm_id": "00Q1"},
    )
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["status"] == "accepted"
    assert accepted.headers["location"] == f"/v1/leads/{accepted.json()['id']}"
    lead = (await client.get(accepted.headers["location"])).json()
    assert (lead["email"], lead["country"], lead["phone"], lead["email_domain"]) == (
        "ada@example.com",
        "GB",
        "+442079460000",
        "example.com",
    )
    assert [entry["type"] for entry in lead["timeline"]] == ["lead.received"]

    again = await client.post("/v1/leads", json={"email": "ADA@example.com", "job_title": "CTO"})
    assert again.status_code == 202
    assert again.json() == {"id": lead["id"], "status": "reengaged"}
    timeline = (await client.get(f"/v1/leads/{lead['id']}/timeline")).json()
    assert timeline["lead_id"] == lead["id"]
    assert [entry["type"] for entry in timeline["timeline"]] == ["lead.received", "lead.reengaged"]


BAD_FIELDS = [
    ({"email": "ada@example.com", "shoe_size": 44}, "shoe_size"),
    ({"email": "ada@example.com", "country": "Narnia"}, "country"),
    ({"email": "ada@example.com", "phone": "12"}, "phone"),
    ({"email": "ada@example.com", "email_lookalike": False}, "email_lookalike"),
]

BAD_LIST_PARAMETERS = [
    ({"cursor": "not-a-cursor"}, "cursor"),
    ({"limit": 0}, "limit"),
    ({"stage": "hot"}, "stage"),
    ({"updated_since": "yesterday"}, "updated_since"),
    ({"updated_since": "2026-11-01T00:00:00"}, "updated_since"),
]


async def test_bad_input_is_named_and_stores_nothing(client: httpx.AsyncClient) -> None:
    for body, field in BAD_FIELDS:
        refused = await client.post("/v1/leads", json=body)
        assert refused.status_code == 422, refused.text
        assert field in _fields(refused.json())
    for params, field in BAD_LIST_PARAMETERS:
        refused = await client.get("/v1/leads", params=params)
        assert refused.status_code == 422, refused.text
        problem = refused.json()
        assert field in _fields(problem) or (problem["detail"] or "").startswith(field), problem
    missing = await client.get("/v1/leads/7f3c8a52-1d47-4c36-9a55-0c1f2e6b9d10/timeline")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert (await client.get("/v1/leads")).json() == {"leads": [], "next_cursor": None}


async def test_the_same_idempotency_key_repeats_the_first_answer_and_refuses_another_body(
    client: httpx.AsyncClient,
) -> None:
    key = {"Idempotency-Key": "9b2f7c1e-6a0d-4f3b-8e59-2d7c4a1b0e63"}
    first = await client.post("/v1/leads", json={"email": "ada@example.com"}, headers=key)
    retry = await client.post("/v1/leads", json={"email": "ada@example.com"}, headers=key)
    assert (retry.status_code, retry.json()) == (first.status_code, first.json())
    assert retry.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    other = await client.post("/v1/leads", json={"email": "grace@example.org"}, headers=key)
    assert other.status_code == 422
    assert other.headers["content-type"] == "application/problem+json"
    assert "Idempotency-Key" in other.json()["detail"]
    # The same key on the batch endpoint is another request too.
    batch = await client.post("/v1/leads:batch", json={"leads": [{"email": "ada@example.com"}]}, headers=key)
    assert batch.status_code == 422
    listed = (await client.get("/v1/leads")).json()["leads"]
    assert [(lead["email"], lead["reengagement_count"]) for lead in listed] == [("ada@example.com", 0)]


async def test_a_batch_answers_each_item_in_order(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        "/v1/leads:batch",
        json={
            "leads": [{"email": "ada@example.com"}, {"email": "nope"}, "not an object", {"email": "Ada@example.com"}]
        },
    )
    assert answer.status_code == 202, answer.text
    results = answer.json()["results"]
    assert [result["status"] for result in results] == ["accepted", "rejected", "rejected", "reengaged"]
    assert _fields(results[1]["problem"]) == {"leads.1.email"}
    assert results[1]["problem"]["errors"][0]["pointer"] == "/leads/1/email"
    assert results[3]["id"] == results[0]["id"]


async def test_a_batch_with_no_valid_item_or_too_many_items_is_refused(client: httpx.AsyncClient) -> None:
    none_valid = await client.post("/v1/leads:batch", json={"leads": [{"email": "nope"}, {"shoe_size": 1}]})
    assert none_valid.status_code == 422
    assert {"leads.0.email", "leads.1.shoe_size", "leads.1.email"} <= _fields(none_valid.json())
    too_many = await client.post("/v1/leads:batch", json={"leads": [{"email": "a@example.com"}] * 1001})
    assert too_many.status_code == 422
    assert _fields(too_many.json()) == {"leads"}
    unknown = await client.post("/v1/leads:batch", json={"leads": [{"email": "a@example.com"}], "extra": 1})
    assert "extra" in _fields(unknown.json())
    assert (await client.get("/v1/leads")).json()["leads"] == []


async def test_leads_are_listed_by_pages_with_filters(client: httpx.AsyncClient) -> None:
    for index in range(5):
        await client.post(
            "/v1/leads", json={"email": f"p{index}@example.com", "source": "webinar" if index % 2 else "crm"}
        )
    emails: list[str] = []
    cursor: str | None = None
    while True:
        page = (await client.get("/v1/leads", params={"limit": 2, **({"cursor": cursor} if cursor else {})})).json()
        emails.extend(lead["email"] for lead in page["leads"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert emails == [f"p{index}@example.com" for index in range(5)]
    webinar = (await client.get("/v1/leads", params={"source": "webinar"})).json()["leads"]
    assert [lead["email"] for lead in webinar] == ["p1@example.com", "p3@example.com"]
    assert (await client.get("/v1/leads", params={"stage": "won"})).json()["leads"] == []
    future = (await client.get("/v1/leads", params={"updated_since": "2999-01-01T00:00:00Z"})).json()
    assert future == {"leads": [], "next_cursor": None}
