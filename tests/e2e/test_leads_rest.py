"""Leads REST through real intake processes: concurrent retries and concurrent submissions of one person."""

import asyncio

import httpx
import pytest

from leadrelay.broker import EmbeddedBroker
from leadrelay.testing import DEV_API_KEY, count_rows, wait_until
from tests.e2e.conftest import StackFactory

AUTH = {"Authorization": f"Bearer {DEV_API_KEY}"}


async def _workers_serving(url: str, workers: int) -> None:
    """Wait until every worker process answers (each seeds and learns the key on its own)."""

    async def ready() -> bool:
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=5.0) as client:
            answers = await asyncio.gather(*(client.get("/v1/whoami") for _ in range(4 * workers)))
        return all(answer.status_code == 200 for answer in answers)

    await wait_until(ready, timeout=60, what="every intake worker to accept the key")


@pytest.mark.postgres
async def test_twenty_concurrent_retries_with_one_key_store_one_lead(
    broker: EmbeddedBroker, make_stack: StackFactory
) -> None:
    stack = await make_stack(broker, backend="postgres", env={"INTAKE_WORKERS": "2"})
    await stack.start("intake")
    await _workers_serving(stack["intake"].url, 2)
    body = {"email": "Retry@Analytical.example", "company": "Analytical Engines"}
    headers = {**AUTH, "Idempotency-Key": "crm-sync-0001"}
    # A fresh connection per request, so the retries spread over both workers.
    async with httpx.AsyncClient(
        base_url=stack["intake"].url, timeout=30.0, limits=httpx.Limits(max_keepalive_connections=0)
    ) as client:
        answers = await asyncio.gather(*(client.post("/v1/leads", json=body, headers=headers) for _ in range(20)))
        assert [answer.status_code for answer in answers] == [202] * 20, [answer.text for answer in answers]
        assert {answer.text for answer in answers} == {answers[0].text}
        assert answers[0].json()["status"] == "accepted"
        assert sum(answer.headers.get("idempotent-replayed") != "true" for answer in answers) == 1

        other = await client.post("/v1/leads", json={**body, "company": "Another"}, headers=headers)
        assert other.status_code == 422
        assert other.headers["content-type"] == "application/problem+json"

        lead = (await client.get(f"/v1/leads/{answers[0].json()['id']}", headers=AUTH)).json()
        assert lead["reengagement_count"] == 0
        assert lead["company"] == "Analytical Engines"
    database = stack.database_urls["intake"]
    assert await count_rows(database, "lead") == 1
    assert await count_rows(database, "idempotency_record") == 1


@pytest.mark.postgres
async def test_one_person_sent_twenty_times_at_once_to_two_workers_is_one_lead(
    broker: EmbeddedBroker, make_stack: StackFactory
) -> None:
    stack = await make_stack(broker, backend="postgres", env={"INTAKE_WORKERS": "2"})
    await stack.start("intake")
    await _workers_serving(stack["intake"].url, 2)
    async with httpx.AsyncClient(
        base_url=stack["intake"].url, headers=AUTH, timeout=30.0, limits=httpx.Limits(max_keepalive_connections=0)
    ) as client:
        answers = await asyncio.gather(
            *(
                client.post("/v1/leads", json={"email": f"{'GRACE' if index % 2 else 'grace'}@navy.example"})
                for index in range(20)
            )
        )
        assert [answer.status_code for answer in answers] == [202] * 20, [answer.text for answer in answers]
        assert len({answer.json()["id"] for answer in answers}) == 1
        assert sorted(answer.json()["status"] for answer in answers) == ["accepted"] + ["reengaged"] * 19
        lead = (await client.get(f"/v1/leads/{answers[0].json()['id']}")).json()
    assert lead["reengagement_count"] == 19
    assert [entry["type"] for entry in lead["timeline"]].count("lead.received") == 1
    assert await count_rows(stack.database_urls["intake"], "lead") == 1


async def test_paging_returns_each_lead_once_while_leads_arrive_and_change(
    broker: EmbeddedBroker, make_stack: StackFactory, backend: str
) -> None:
    stack = await make_stack(broker, backend=backend)
    await stack.start("intake")
    async with httpx.AsyncClient(base_url=stack["intake"].url, headers=AUTH, timeout=30.0) as client:
        before = [
            (await client.post("/v1/leads", json={"email": f"before{i}@example.com"})).json()["id"] for i in range(30)
        ]
        paging_done = asyncio.Event()

        async def keep_writing() -> int:
            # New leads, and re-engagements that update leads already paged over, until paging ends.
            written = 0
            while not paging_done.is_set():
                await client.post("/v1/leads", json={"email": f"during{written}@example.com"})
                await client.post("/v1/leads", json={"email": f"before{written % 30}@example.com", "industry": "x"})
                written += 1
            return written

        writer = asyncio.create_task(keep_writing())
        seen: list[str] = []
        params: dict[str, str | int] = {"limit": 7}
        try:
            while True:
                page = (await client.get("/v1/leads", params=params)).json()
                seen.extend(lead["id"] for lead in page["leads"])
                if page["next_cursor"] is None:
                    break
                params = {"limit": 7, "cursor": page["next_cursor"]}
        finally:
            paging_done.set()
            written = await writer
    assert written > 0
    assert len(seen) == len(set(seen)), "a lead came twice"
    assert set(before) <= set(seen), "a lead that existed before paging was skipped"
