"""Activities on leads through HTTP, on SQLite and PostgreSQL: the state machine, the timeline, the event, races."""

import asyncio
import itertools
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlmodel import col, select

from intake.leads.models import Lead, TimelineEntry
from leadrelay.events import LeadActivity, parse_as
from leadrelay.outbox import OutboxMessage
from leadrelay.stages import LeadStage
from leadrelay.testing import Storage


async def _lead(storage: Storage, stage: LeadStage = LeadStage.MQL) -> str:
    async with storage.sessions() as session:
        lead = Lead(email="ada@analytical.example", stage=stage)
        session.add(lead)
        await session.commit()
        return lead.id


async def _state(storage: Storage, lead_id: str) -> tuple[LeadStage, list[TimelineEntry], list[LeadActivity]]:
    async with storage.sessions() as session:
        lead = await session.get(Lead, lead_id)
        assert lead is not None
        timeline = (await session.exec(select(TimelineEntry).where(TimelineEntry.lead_id == lead_id))).all()
        rows = (
            await session.exec(
                select(OutboxMessage).where(OutboxMessage.event_type == "lead.activity").order_by(col(OutboxMessage.id))
            )
        ).all()
    return lead.stage, list(timeline), [parse_as(row.payload, LeadActivity).data for row in rows]


async def _post(api: httpx.AsyncClient, lead_id: str, **body: Any) -> httpx.Response:
    return await api.post(f"/v1/leads/{lead_id}/activities", json=body)


async def test_an_activity_moves_the_stage_joins_the_timeline_and_is_published(
    api: httpx.AsyncClient, intake_db: Storage
) -> None:
    lead_id = await _lead(intake_db)

    answer = await _post(api, lead_id, type="accepted", rep_id="rep-ada", occurred_at="2026-11-23T12:02:12.31+01:00")

    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert (body["type"], body["previous_stage"], body["stage"], body["rep_id"]) == (
        "accepted",
        "mql",
        "sal",
        "rep-ada",
    )
    stage, timeline, events = await _state(intake_db, lead_id)
    assert stage == LeadStage.SAL
    assert [(entry.event_id, entry.type) for entry in timeline] == [(body["id"], "lead.activity")]
    assert timeline[0].details["previous_stage"] == "mql"
    assert timeline[0].details["stage"] == "sal"
    [event] = events
    assert (event.lead_id, event.activity, event.rep_id, event.previous_stage, event.stage) == (
        lead_id,
        "accepted",
        "rep-ada",
        LeadStage.MQL,
        LeadStage.SAL,
    )
    assert event.occurred_at == datetime(2026, 11, 23, 11, 2, 12, 310000, tzinfo=UTC)
    read = (await api.get(f"/v1/leads/{lead_id}")).json()
    assert read["stage"] == "sal"
    assert [entry["type"] for entry in read["timeline"]] == ["lead.activity"]


async def test_a_lead_walks_from_mql_to_won_with_engagement_on_the_way(
    api: httpx.AsyncClient, intake_db: Storage
) -> None:
    lead_id = await _lead(intake_db)
    steps: list[dict[str, Any]] = [
        {"type": "pricing_page_viewed"},
        {"type": "accepted", "rep_id": "rep-ada"},
        {"type": "contacted", "channel": "meeting", "rep_id": "rep-ada"},
        {"type": "qualified", "rep_id": "rep-ada"},
        {"type": "opportunity_created", "rep_id": "rep-ada"},
        {"type": "demo_requested", "rep_id": "rep-ada"},
        {"type": "won", "rep_id": "rep-ada"},
        {"type": "email_clicked"},
    ]
    stages = []
    for step in steps:
        answer = await _post(api, lead_id, **step)
        assert answer.status_code == 201, (step, answer.text)
        stages.append(answer.json()["stage"])
    assert stages == ["mql", "sal", "sal", "sql", "opportunity", "opportunity", "won", "won"]
    stage, timeline, events = await _state(intake_db, lead_id)
    assert stage == LeadStage.WON
    assert len(timeline) == len(events) == len(steps)
    assert events[0].rep_id == ""  # engagement without a rep


async def test_an_invalid_transition_is_409_naming_the_stage_and_stores_nothing(
    api: httpx.AsyncClient, intake_db: Storage
) -> None:
    lead_id = await _lead(intake_db, LeadStage.SAL)

    answer = await _post(api, lead_id, type="won", rep_id="rep-ada")

    assert answer.status_code == 409
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["type"] == "urn:leadrelay:problem:invalid-transition"
    assert "stage sal" in problem["detail"]
    assert problem["errors"] == [{"field": "type", "pointer": "/type", "message": "not allowed in stage sal"}]
    assert await _state(intake_db, lead_id) == (LeadStage.SAL, [], [])


@pytest.mark.parametrize("lead_id", ["7f3c8a52-1d47-4c36-9a55-0c1f2e6b9d10", "not-a-uuid"])
async def test_an_unknown_lead_is_404(api: httpx.AsyncClient, intake_db: Storage, lead_id: str) -> None:
    answer = await _post(api, lead_id, type="accepted", rep_id="rep-ada")
    assert answer.status_code == 404
    assert answer.json()["detail"] == f"No lead with id {lead_id}."
    assert await intake_db.outbox_count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "rejected", "rep_id": "rep-ada"}, "reason"),
        ({"type": "rejected", "reason": "too_expensive", "rep_id": "rep-ada"}, "reason"),
        ({"type": "lost", "reason": "spam", "rep_id": "rep-ada"}, "reason"),
        ({"type": "accepted", "reason": "no_budget", "rep_id": "rep-ada"}, "reason"),
        ({"type": "contacted", "rep_id": "rep-ada"}, "channel"),
        ({"type": "contacted", "channel": "fax", "rep_id": "rep-ada"}, "channel"),
        ({"type": "accepted", "channel": "call", "rep_id": "rep-ada"}, "channel"),
        ({"type": "accepted"}, "rep_id"),
        ({"type": "accepted", "rep_id": ""}, "rep_id"),
        ({"type": "accepted", "rep_id": "rep\x00ada"}, "rep_id"),
        ({"type": "emailed", "rep_id": "rep-ada"}, "type"),
        ({"type": "accepted", "rep_id": "rep-ada", "occurred_at": "2026-11-23T12:00:00"}, "occurred_at"),
        ({"type": "accepted", "rep_id": "rep-ada", "mood": "happy"}, "mood"),
    ],
)
async def test_bad_input_is_422_naming_the_field_and_stores_nothing(
    api: httpx.AsyncClient, intake_db: Storage, body: dict[str, Any], field: str
) -> None:
    lead_id = await _lead(intake_db)
    answer = await _post(api, lead_id, **body)
    assert answer.status_code == 422, answer.text
    assert field in {error["field"] for error in answer.json()["errors"]}
    assert await _state(intake_db, lead_id) == (LeadStage.MQL, [], [])


async def test_a_key_without_the_scope_is_refused(
    api: httpx.AsyncClient, intake_db: Storage, reader_headers: dict[str, str]
) -> None:
    lead_id = await _lead(intake_db)
    answer = await api.post(
        f"/v1/leads/{lead_id}/activities",
        json={"type": "accepted", "rep_id": "rep-ada"},
        headers=reader_headers,
    )
    assert answer.status_code == 403
    assert answer.json()["detail"] == "The API key lacks the scope(s): activities:write."


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_concurrent_acceptances_of_one_lead_apply_once(api: httpx.AsyncClient, intake_db: Storage) -> None:
    lead_id = await _lead(intake_db)

    answers = await asyncio.gather(*(_post(api, lead_id, type="accepted", rep_id=f"rep-{n}") for n in range(10)))

    assert sorted(answer.status_code for answer in answers) == [201] + [409] * 9
    assert all("stage sal" in answer.json()["detail"] for answer in answers if answer.status_code == 409)
    stage, timeline, events = await _state(intake_db, lead_id)
    assert (stage, len(timeline), [event.previous_stage for event in events]) == (LeadStage.SAL, 1, [LeadStage.MQL])


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_racing_activities_apply_one_after_another(api: httpx.AsyncClient, intake_db: Storage) -> None:
    # Accepting, rejecting and recycling race from mql: whatever applies, applies from the stage
    # the one before it left, as if they had come one at a time.
    lead_id = await _lead(intake_db)
    bodies: list[dict[str, Any]] = [
        *({"type": "accepted", "rep_id": f"rep-{n}"} for n in range(4)),
        *({"type": "rejected", "reason": "no_need", "rep_id": f"rep-{n}"} for n in range(4)),
        *({"type": "recycled", "rep_id": f"rep-{n}"} for n in range(4)),
        *({"type": "contacted", "channel": "call", "rep_id": f"rep-{n}"} for n in range(4)),
    ]

    answers = await asyncio.gather(*(_post(api, lead_id, **body) for body in bodies))

    stage, timeline, events = await _state(intake_db, lead_id)
    assert sorted(answer.status_code for answer in answers) == [201] * len(events) + [409] * (len(bodies) - len(events))
    assert len(timeline) == len(events)
    assert events[0].previous_stage == LeadStage.MQL
    for before, after in itertools.pairwise(events):
        assert after.previous_stage == before.stage
    assert stage == events[-1].stage
