"""Bad input gets a 4xx problem+json naming the failing field, and stores nothing."""

import httpx
import pytest

from leadrelay.broker import EmbeddedBroker
from leadrelay.testing import DEV_API_KEY, count_rows
from tests.e2e.conftest import StackFactory

JSON = {"Content-Type": "application/json"}
AUTH = {"Authorization": f"Bearer {DEV_API_KEY}", **JSON}

CASES = [
    pytest.param(AUTH, b'{"email": "ada@example.com",', 400, "body", id="malformed-json"),
    pytest.param(AUTH, b'{"company": "Analytical Engines"}', 422, "email", id="missing-required-field"),
    pytest.param(AUTH, b'{"email": "not-an-email"}', 422, "email", id="invalid-email"),
    pytest.param(AUTH, b'{"email": "ada@example.com", "country": "Narnia"}', 422, "country", id="not-a-country"),
    # Two characters that upper-case to three ("SSA"): PostgreSQL's VARCHAR(2) refused it, and that answered 503.
    pytest.param(
        AUTH, '{"email": "ada@example.com", "country": "ßa"}'.encode(), 422, "country", id="longer-upper-cased"
    ),
    pytest.param(AUTH, b'{"email": "ada@example.com", "shoe_size": 44}', 422, "shoe_size", id="unknown-field"),
    pytest.param(AUTH, b'["ada@example.com"]', 422, "body", id="not-an-object"),
    pytest.param(
        AUTH, b'{"email": "ada@example.com", "first_name": "A\\u0000da"}', 422, "first_name", id="nul-character"
    ),
    pytest.param(
        AUTH, b'{"email": "ada@example.com", "attributes": {"k": "\\ud800"}}', 422, "attributes", id="lone-surrogate"
    ),
    pytest.param(
        {"Authorization": "Bearer lr_wrong_key_0000000000", **JSON},
        b'{"email": "ada@example.com"}',
        401,
        None,
        id="wrong-api-key",
    ),
    pytest.param(JSON, b'{"email": "ada@example.com"}', 401, None, id="missing-api-key"),
]


async def test_bad_requests_get_problem_details_and_store_nothing(
    broker: EmbeddedBroker, make_stack: StackFactory, backend: str
) -> None:
    stack = await make_stack(broker, backend=backend)
    await stack.start("intake")
    async with httpx.AsyncClient(base_url=stack["intake"].url) as client:
        for case in CASES:
            headers, body, status, field = case.values
            response = await client.post("/v1/leads", content=body, headers=headers)

            assert response.status_code == status, (case.id, response.text)
            assert response.headers["content-type"] == "application/problem+json", case.id
            problem = response.json()
            assert problem["status"] == status, case.id
            assert problem["title"], case.id
            if field is not None:
                assert field in {error["field"] for error in problem["errors"]}, (case.id, problem)
            if status == 401:
                assert response.headers["www-authenticate"] == "Bearer", case.id

        for lead_id in ("does-not-exist", "nul%00byte", "7f3c8a52-1d47-4c36-9a55-0c1f2e6b9d10"):
            unknown = await client.get(f"/v1/leads/{lead_id}", headers=AUTH)
            assert unknown.status_code == 404, lead_id
            assert unknown.headers["content-type"] == "application/problem+json"

    for table in ("lead", "timeline_entry", "outbox"):
        assert await count_rows(stack.database_urls["intake"], table) == 0, table
