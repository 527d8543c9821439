"""Idempotency-Key and external ids on activities and account batches, over HTTP, on SQLite and PostgreSQL."""

import asyncio
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import col, select

from intake.accounts.models import Account
from intake.activities.router import router as activities_router
from intake.leads.models import Lead, TimelineEntry
from intake.main import create_app
from leadrelay.db import create_engine, create_session_factory
from leadrelay.idempotency_keys import HEADER, REPLAYED_HEADER
from leadrelay.outbox import OutboxMessage
from leadrelay.problems import install_problem_handlers
from leadrelay.stages import LeadStage
from leadrelay.testing import Storage

ACCOUNTS = [
    {"id": "acc-1", "name": "Analytical Engines Ltd", "domains": ["analytical.example"], "country": "GB"},
    {"id": "acc-2", "name": ""},
]


async def _lead(storage: Storage) -> str:
    async with storage.sessions() as session:
        lead = Lead(email="ada@analytical.example", stage=LeadStage.MQL)
        session.add(lead)
        await session.commit()
        return lead.id


async def _activities(storage: Storage) -> tuple[list[TimelineEntry], int]:
    async with storage.sessions() as session:
        timeline = (await session.exec(select(TimelineEntry).order_by(col(TimelineEntry.id)))).all()
        published = (await session.exec(select(OutboxMessage).where(OutboxMessage.event_type == "lead.activity"))).all()
    return list(timeline), len(published)


async def _stage(storage: Storage, lead_id: str) -> LeadStage:
    async with storage.sessions() as session:
        lead = await session.get(Lead, lead_id)
        assert lead is not None
        return lead.stage


async def test_an_activity_retried_with_its_key_answers_the_first_answer_and_records_nothing(
    api: httpx.AsyncClient, intake_db: Storage
) -> None:
    lead_id = await _lead(intake_db)
    body = {"type": "accepted", "rep_id": "rep-ada"}

    first = await api.post(f"/v1/leads/{lead_id}/activities", json=body, headers={HEADER: "act-1"})
    retry = await api.post(f"/v1/leads/{lead_id}/activities", json=body, headers={HEADER: "act-1"})

    assert first.status_code == 201, first.text
    assert REPLAYED_HEADER not in first.headers
    # Applied again, "accepted" in stage SAL would be a 409: the retry did not run.
    assert (retry.status_code, retry.json(), retry.headers[REPLAYED_HEADER]) == (201, first.json(), "true")
    timeline, published = await _activities(intake_db)
    assert ([entry.event_id for entry in timeline], published) == ([first.json()["id"]], 1)
    assert await _stage(intake_db, lead_id) == LeadStage.SAL


async def test_an_activity_key_reused_with_another_body_is_422_and_records_nothing(
    api: httpx.AsyncClient, intake_db: Storage
) -> None:
    lead_id = await _lead(intake_db)
    await api.post(f"/v1/leads/{lead_id}/activities", json={"type": "pricing_page_viewed"}, headers={HEADER: "k"})

    reused = await api.post(f"/v1/leads/{lead_id}/activities", json={"type": "demo_requested"}, headers={HEADER: "k"})

    assert reused.status_code == 422, reused.text
    assert reused.headers["content-type"] == "application/problem+json"
    assert HEADER in reused.json()["detail"]
    timeline, published = await _activities(intake_db)
    assert (len(timeline), published) == (1, 1)


async def test_twenty_concurrent_retries_on_many_workers_record_one_activity(
    api: httpx.AsyncClient, intake_db: Storage
) -> None:
    lead_id = await _lead(intake_db)
    # Each worker has its own engine (one connection on SQLite), as intake's worker processes do.
    engines = [create_engine(intake_db.url) for _ in range(4)]
    clients = []
    for engine in engines:
        app = FastAPI()
        install_problem_handlers(app)
        app.state.runtime = SimpleNamespace(sessions=create_session_factory(engine))
        app.include_router(activities_router)
        clients.append(
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://intake",
                headers={"Authorization": api.headers["Authorization"], HEADER: "act-20"},
            )
        )
    body = {"type": "accepted", "rep_id": "rep-ada"}
    try:
        answers = await asyncio.gather(
            *(clients[index % 4].post(f"/v1/leads/{lead_id}/activities", json=body) for index in range(20))
        )
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))
        await asyncio.gather(*(engine.dispose() for engine in engines))
    assert {answer.status_code for answer in answers} == {201}, [answer.text for answer in answers]
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert sum(REPLAYED_HEADER not in answer.headers for answer in answers) == 1
    timeline, published = await _activities(intake_db)
    assert (len(timeline), published) == (1, 1)
    assert await _stage(intake_db, lead_id) == LeadStage.SAL


async def test_an_external_id_seen_on_the_lead_answers_its_first_activity_with_200(
    api: httpx.AsyncClient, intake_db: Storage
) -> None:
    lead_id = await _lead(intake_db)
    other_id = await _lead_with_email(intake_db, "grace@example.org")
    body = {"type": "accepted", "rep_id": "rep-ada", "external_id": "00T1"}

    first = await api.post(f"/v1/leads/{lead_id}/activities", json=body)
    again = await api.post(f"/v1/leads/{lead_id}/activities", json={**body, "rep_id": "rep-bob"})
    elsewhere = await api.post(f"/v1/leads/{other_id}/activities", json=body)

    assert first.status_code == 201, first.text
    assert first.json()["external_id"] == "00T1"
    # A retry without a key is not a transition from SAL (409): it is the activity already recorded.
    assert (again.status_code, again.json()) == (200, first.json())
    assert elsewhere.status_code == 201, elsewhere.text  # external ids are per lead
    timeline, published = await _activities(intake_db)
    assert (len(timeline), published) == (2, 2)


async def _lead_with_email(storage: Storage, email: str) -> str:
    async with storage.sessions() as session:
        lead = Lead(email=email, stage=LeadStage.MQL)
        session.add(lead)
        await session.commit()
        return lead.id


async def test_concurrent_activities_with_one_external_id_record_one(
    api: httpx.AsyncClient, intake_db: Storage
) -> None:
    lead_id = await _lead(intake_db)
    body = {"type": "pricing_page_viewed", "external_id": "evt-7"}

    answers = await asyncio.gather(*(api.post(f"/v1/leads/{lead_id}/activities", json=body) for _ in range(10)))

    assert sorted(answer.status_code for answer in answers) == [200] * 9 + [201]
    assert len({answer.json()["id"] for answer in answers}) == 1
    timeline, published = await _activities(intake_db)
    assert (len(timeline), published) == (1, 1)


@pytest.mark.parametrize("external_id", ["", "x" * 101, "a\x00b"])
async def test_a_bad_external_id_is_422_naming_it(api: httpx.AsyncClient, intake_db: Storage, external_id: str) -> None:
    lead_id = await _lead(intake_db)
    answer = await api.post(
        f"/v1/leads/{lead_id}/activities", json={"type": "pricing_page_viewed", "external_id": external_id}
    )
    assert answer.status_code == 422, answer.text
    assert [error["field"] for error in answer.json()["errors"]] == ["external_id"]


async def _accounts(storage: Storage) -> tuple[list[str], int]:
    async with storage.sessions() as session:
        ids = (await session.exec(select(Account.id).order_by(col(Account.id)))).all()
        published = (await session.exec(select(OutboxMessage).where(OutboxMessage.topic == "accounts.changed"))).all()
    return list(ids), len(published)


async def test_an_account_batch_retried_with_its_key_answers_the_first_answer_and_publishes_nothing(
    api: httpx.AsyncClient, intake_db: Storage
) -> None:
    first = await api.post("/v1/accounts:batch", json={"accounts": ACCOUNTS}, headers={HEADER: "b-1"})
    # Changed meanwhile: without the key this batch would store and publish it again.
    await api.put("/v1/accounts/acc-1", json={"name": "Renamed Ltd"})
    retry = await api.post("/v1/accounts:batch", json={"accounts": ACCOUNTS}, headers={HEADER: "b-1"})

    assert first.status_code == 200, first.text
    assert [result["status"] for result in first.json()["results"]] == [201, 422]
    assert (retry.status_code, retry.json(), retry.headers[REPLAYED_HEADER]) == (200, first.json(), "true")
    assert await _accounts(intake_db) == (["acc-1"], 2)

    reused = await api.post("/v1/accounts:batch", json={"accounts": ACCOUNTS[:1]}, headers={HEADER: "b-1"})
    assert reused.status_code == 422, reused.text
    assert HEADER in reused.json()["detail"]
    assert await _accounts(intake_db) == (["acc-1"], 2)


async def test_twenty_concurrent_account_batch_retries_store_once(api: httpx.AsyncClient, intake_db: Storage) -> None:
    answers = await asyncio.gather(
        *(api.post("/v1/accounts:batch", json={"accounts": ACCOUNTS}, headers={HEADER: "b-20"}) for _ in range(20))
    )
    assert {answer.status_code for answer in answers} == {200}
    assert len({answer.text for answer in answers}) == 1
    assert sum(REPLAYED_HEADER not in answer.headers for answer in answers) == 1
    assert await _accounts(intake_db) == (["acc-1"], 1)


def test_every_creating_post_documents_the_key_and_the_replay_header() -> None:
    operations = create_app().openapi()["paths"]
    for path, success in [
        ("/v1/leads", "202"),
        ("/v1/leads:batch", "202"),
        ("/v1/leads/{lead_id}/activities", "201"),
        ("/v1/accounts:batch", "200"),
    ]:
        operation: dict[str, Any] = operations[path]["post"]
        assert HEADER in {parameter["name"] for parameter in operation["parameters"] if parameter["in"] == "header"}
        assert REPLAYED_HEADER in operation["responses"][success]["headers"], path
