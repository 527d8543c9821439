"""Teams and reps over HTTP, in process on SQLite and PostgreSQL: validation, events, batches, secrets, audit."""

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlmodel import col, select

from leadrelay.apikeys import Scope, Team
from leadrelay.audit import AuditEntry
from leadrelay.calendar import TeamCalendar
from leadrelay.events import TeamChanged, parse_as
from leadrelay.outbox import OutboxMessage
from leadrelay.problems import install_problem_handlers
from leadrelay.testing import Storage, migrated, migrations_of, stored_key
from router.reps.crypto import channel_box
from router.reps.models import Rep
from router.reps.router import router as reps_router
from router.teams.router import router as teams_router

OPS_KEY = "lr_test_ops_0123456789abcdef"
READER_KEY = "lr_test_reader_0123456789abcdef"
SECRET_KEY = "test-secret-key-0123456789"
WEBHOOK_SECRET = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LWZvci1hZGE="
SLACK_URL = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXwxyz"

TEAM: dict[str, Any] = {
    "name": "EMEA inside sales",
    "timezone": "Europe/London",
    "working_hours": {"mon": [{"start": "09:00", "end": "12:30"}, {"start": "13:30", "end": "17:30"}]},
    "holidays": {"country": "gb", "subdivision": "eng"},
    "manager_rep_id": "rep-grace",
}


def rep_body(**changes: Any) -> dict[str, Any]:
    return {
        "name": "Ada Lovelace",
        "teams": ["team-emea"],
        "weight": 2,
        "daily_cap": 20,
        "languages": ["EN", "fr"],
        "territories": ["GB", "EMEA"],
        "out_of_office": [{"start": "2026-12-24T00:00:00Z", "end": "2027-01-02T00:00:00Z"}],
        "crm_user_id": "0055g00000AdaLAAZ",
        "channels": [
            {"kind": "webhook", "url": "https://crm.example/hooks/ada", "secret": WEBHOOK_SECRET},
            {"kind": "slack", "url": SLACK_URL},
        ],
        **changes,
    }


@pytest.fixture
async def router_db(database_url: str) -> AsyncIterator[Storage]:
    """Router's schema on the test's backend, with an ops key (reps:write, routing:read) and a reader key."""
    async with migrated(database_url, migrations_of("router")) as storage:
        async with storage.sessions() as session:
            session.add(stored_key("key_ops", OPS_KEY, team=Team.OPS, scopes=[Scope.REPS_WRITE, Scope.ROUTING_READ]))
            session.add(stored_key("key_reader", READER_KEY, team=Team.SALES, scopes=[Scope.ROUTING_READ]))
            await session.commit()
        yield storage


@pytest.fixture
async def api(router_db: Storage) -> AsyncIterator[httpx.AsyncClient]:
    """A client of router's teams and reps routes, holding the ops key."""
    app = FastAPI()
    install_problem_handlers(app)
    settings = SimpleNamespace(secret_key=SecretStr(SECRET_KEY))
    app.state.runtime = SimpleNamespace(sessions=router_db.sessions, settings=settings)
    app.include_router(teams_router)
    app.include_router(reps_router)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {OPS_KEY}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://router", headers=headers) as client:
        yield client


READER = {"Authorization": f"Bearer {READER_KEY}"}


async def team_events(storage: Storage) -> list[TeamChanged]:
    async with storage.sessions() as session:
        rows = (
            await session.exec(
                select(OutboxMessage).where(OutboxMessage.event_type == "team.changed").order_by(col(OutboxMessage.id))
            )
        ).all()
    return [parse_as(row.payload, TeamChanged).data for row in rows]


async def audit_actions(storage: Storage) -> list[tuple[str, str]]:
    async with storage.sessions() as session:
        rows = (await session.exec(select(AuditEntry).order_by(col(AuditEntry.id)))).all()
    return [(row.action, row.target) for row in rows]


async def test_a_team_is_stored_announced_once_per_change_and_audited(
    api: httpx.AsyncClient, router_db: Storage
) -> None:
    created = await api.put("/v1/teams/team-emea", json=TEAM)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/v1/teams/team-emea"
    body = created.json()
    assert body["holidays"] == {"country": "GB", "subdivision": "ENG"}
    assert body["version"] == 1

    again = await api.put("/v1/teams/team-emea", json=TEAM)
    assert again.status_code == 200
    assert again.json()["version"] == 1
    assert len(await team_events(router_db)) == 1

    changed = await api.put("/v1/teams/team-emea", json={**TEAM, "timezone": "Europe/Dublin"})
    assert changed.json()["version"] == 2

    events = await team_events(router_db)
    assert [event.version for event in events] == [1, 2]
    first = events[0]
    assert first.team_id == "team-emea"
    assert first.timezone == "Europe/London"
    assert first.holidays is not None
    assert (first.holidays.country, first.holidays.subdivision) == ("GB", "ENG")
    assert [(i.start, i.end) for i in first.working_hours["mon"]] == [("09:00", "12:30"), ("13:30", "17:30")]
    assert first.manager_rep_id == "rep-grace"
    assert await audit_actions(router_db) == [("team.created", "team-emea"), ("team.updated", "team-emea")]

    listed = await api.get("/v1/teams", headers=READER)
    assert [team["id"] for team in listed.json()["teams"]] == ["team-emea"]
    read = await api.get("/v1/teams/team-emea", headers=READER)
    assert read.json()["timezone"] == "Europe/Dublin"
    assert (await api.get("/v1/teams/nobody", headers=READER)).status_code == 404


async def test_the_announced_calendar_is_enough_to_run_a_business_clock(
    api: httpx.AsyncClient, router_db: Storage
) -> None:
    await api.put("/v1/teams/team-emea", json=TEAM)
    [event] = await team_events(router_db)
    payload = event.model_dump(mode="json")
    calendar = TeamCalendar.from_payload(
        timezone=payload["timezone"], working_hours=payload["working_hours"], holiday_calendar=payload["holidays"]
    )
    monday_0930_bst = datetime(2026, 6, 15, 8, 30, tzinfo=UTC)
    assert calendar.is_open(monday_0930_bst)
    assert not calendar.is_open(datetime(2026, 6, 15, 11, 45, tzinfo=UTC))  # 12:45 BST: lunch
    assert not calendar.is_open(datetime(2026, 5, 25, 8, 30, tzinfo=UTC))  # Spring Bank Holiday
    assert calendar.business_seconds_between(monday_0930_bst, monday_0930_bst + timedelta(hours=4)) == 3 * 3600


BAD_TEAMS = [
    ({"timezone": "Europe/Londn"}, "timezone"),
    ({"timezone": "GMT+1"}, "timezone"),
    ({"working_hours": {"mon": [{"start": "17:00", "end": "09:00"}]}}, "working_hours.mon.0.end"),
    ({"working_hours": {"mon": [{"start": "9:00", "end": "17:00"}]}}, "working_hours.mon.0.start"),
    ({"working_hours": {"mon": [{"start": "09:00", "end": "24:30"}]}}, "working_hours.mon.0.end"),
    (
        {"working_hours": {"tue": [{"start": "09:00", "end": "13:00"}, {"start": "12:00", "end": "17:00"}]}},
        "working_hours.tue",
    ),
    ({"working_hours": {"someday": [{"start": "09:00", "end": "17:00"}]}}, "working_hours.someday.[key]"),
    ({"holidays": {"country": "XX"}}, "holidays.country"),
    ({"holidays": {"country": "GB", "subdivision": "NOPE"}}, "holidays.subdivision"),
    ({"name": ""}, "name"),
    ({"colour": "blue"}, "colour"),
]


@pytest.mark.parametrize(("change", "field"), BAD_TEAMS, ids=[field for _, field in BAD_TEAMS])
async def test_a_bad_team_is_refused_naming_the_field(
    api: httpx.AsyncClient, router_db: Storage, change: dict[str, Any], field: str
) -> None:
    response = await api.put("/v1/teams/team-emea", json={**TEAM, **change})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [error["field"] for error in response.json()["errors"]]
    assert await team_events(router_db) == []


async def test_writes_need_reps_write(api: httpx.AsyncClient) -> None:
    assert (await api.put("/v1/teams/team-emea", json=TEAM, headers=READER)).status_code == 403
    assert (await api.put("/v1/reps/rep-ada", json=rep_body(teams=[]), headers=READER)).status_code == 403
    assert (
        await api.put("/v1/teams/team-emea", json=TEAM, headers={"Authorization": "Bearer nope"})
    ).status_code == 401


async def test_a_rep_is_stored_and_never_shows_a_secret(api: httpx.AsyncClient, router_db: Storage) -> None:
    await api.put("/v1/teams/team-emea", json=TEAM)
    created = await api.put("/v1/reps/rep-ada", json=rep_body())
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["languages"] == ["en", "fr"]
    assert body["channels"] == [
        {
            "kind": "webhook",
            "url": "https://crm.example/hooks/ada",
            "secret_last4": WEBHOOK_SECRET[-4:],
            "disabled": False,
        },
        {"kind": "slack", "url_last4": "wxyz", "disabled": False},
    ]
    for response in (
        created,
        await api.get("/v1/reps/rep-ada", headers=READER),
        await api.get("/v1/reps", headers=READER),
    ):
        assert WEBHOOK_SECRET not in response.text
        assert SLACK_URL not in response.text

    async with router_db.sessions() as session:
        stored = await session.get(Rep, "rep-ada")
    assert stored is not None
    raw = json.dumps(stored.channels)
    assert WEBHOOK_SECRET not in raw
    assert SLACK_URL not in raw
    box = channel_box(SECRET_KEY)
    assert box.decrypt(stored.channels[0]["secret"]) == WEBHOOK_SECRET
    assert box.decrypt(stored.channels[1]["url"]) == SLACK_URL

    # The same PUT again changes nothing (secrets compared decrypted), a different one is a new version.
    again = await api.put("/v1/reps/rep-ada", json=rep_body())
    assert (again.status_code, again.json()["version"]) == (200, 1)
    changed = await api.put("/v1/reps/rep-ada", json=rep_body(weight=3))
    assert changed.json()["version"] == 2

    entries = await audit_actions(router_db)
    assert entries[-2:] == [("rep.created", "rep-ada"), ("rep.updated", "rep-ada")]
    async with router_db.sessions() as session:
        details = [row.detail for row in (await session.exec(select(AuditEntry))).all()]
    assert "Ada" not in json.dumps(details)
    assert WEBHOOK_SECRET not in json.dumps(details)


async def test_a_channel_disabled_by_a_410_shows_and_is_enabled_again_by_naming_it_again(
    api: httpx.AsyncClient, router_db: Storage
) -> None:
    await api.put("/v1/teams/team-emea", json=TEAM)
    assert (await api.put("/v1/reps/rep-ada", json=rep_body())).status_code == 201
    async with router_db.sessions() as session:
        # What the delivery job does after a 410 Gone.
        rep = await session.get(Rep, "rep-ada")
        assert rep is not None
        rep.channels = [{**rep.channels[0], "disabled": True}, rep.channels[1]]
        session.add(rep)
        await session.commit()

    shown = (await api.get("/v1/reps/rep-ada", headers=READER)).json()
    assert [channel["disabled"] for channel in shown["channels"]] == [True, False]

    again = await api.put("/v1/reps/rep-ada", json=rep_body())
    assert (again.status_code, again.json()["version"]) == (200, 2)
    assert [channel["disabled"] for channel in again.json()["channels"]] == [False, False]
    async with router_db.sessions() as session:
        stored = await session.get(Rep, "rep-ada")
    assert stored is not None
    assert not any(channel.get("disabled") for channel in stored.channels)
    assert (await audit_actions(router_db))[-1] == ("rep.updated", "rep-ada")


BAD_REPS = [
    ({"weight": 0}, "weight"),
    ({"daily_cap": -1}, "daily_cap"),
    ({"languages": ["english"]}, "languages.0"),
    ({"languages": ["en", "qq"]}, "languages.1"),
    ({"teams": ["team-emea", "team-nowhere"]}, "teams.1"),
    ({"out_of_office": [{"start": "2026-12-24T00:00:00Z", "end": "2026-12-20T00:00:00Z"}]}, "out_of_office.0"),
    ({"out_of_office": [{"start": "2026-12-24T00:00:00", "end": "2026-12-30T00:00:00Z"}]}, "out_of_office.0.start"),
    ({"channels": [{"kind": "webhook", "url": "https://x.example/h", "secret": "short"}]}, "channels.0.webhook.secret"),
    ({"channels": [{"kind": "slack", "url": "not a url"}]}, "channels.0.slack.url"),
    ({"channels": [{"kind": "pager"}]}, "channels.0"),
]


@pytest.mark.parametrize(("change", "field"), BAD_REPS, ids=[field for _, field in BAD_REPS])
async def test_a_bad_rep_is_refused_naming_the_field(
    api: httpx.AsyncClient, router_db: Storage, change: dict[str, Any], field: str
) -> None:
    await api.put("/v1/teams/team-emea", json=TEAM)
    response = await api.put("/v1/reps/rep-ada", json=rep_body(**change))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [error["field"] for error in response.json()["errors"]]
    async with router_db.sessions() as session:
        assert await session.get(Rep, "rep-ada") is None


async def test_a_batch_stores_the_good_items_and_refuses_the_bad_ones(
    api: httpx.AsyncClient, router_db: Storage
) -> None:
    await api.put("/v1/teams/team-emea", json=TEAM)
    await api.put("/v1/reps/rep-b", json=rep_body(name="B", channels=[]))
    reps = [
        {"id": "rep-a", **rep_body()},
        {"id": "rep-b", **rep_body(name="B", channels=[])},  # unchanged
        {"id": "rep-c", **rep_body(weight=-1)},
        {"id": "rep-d", **rep_body(teams=["team-nowhere"])},
        "not an object",
        {"id": "rep-e", **rep_body(teams=[], channels=[])},
    ]
    response = await api.post("/v1/reps:batch", json={"reps": reps})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [(r["id"], r["status"], r["changed"]) for r in results] == [
        ("rep-a", 201, True),
        ("rep-b", 200, False),
        ("rep-c", 422, False),
        ("rep-d", 422, False),
        (None, 422, False),
        ("rep-e", 201, True),
    ]
    assert [e["field"] for e in results[2]["errors"]] == ["reps.2.weight"]
    assert [e["field"] for e in results[3]["errors"]] == ["reps.3.teams.0"]
    assert WEBHOOK_SECRET not in response.text
    listed = await api.get("/v1/reps", headers=READER)
    assert [rep["id"] for rep in listed.json()["reps"]] == ["rep-a", "rep-b", "rep-e"]


async def test_a_batch_retried_with_its_idempotency_key_answers_the_first_answer_and_changes_nothing(
    api: httpx.AsyncClient, router_db: Storage
) -> None:
    await api.put("/v1/teams/team-emea", json=TEAM)
    batch = {"reps": [{"id": "rep-a", **rep_body()}]}
    key = {"Idempotency-Key": "crm-sync-2026-11-27"}
    first = await api.post("/v1/reps:batch", json=batch, headers=key)
    # Meanwhile the rep changes by hand: a replay must neither undo that nor store the batch again.
    await api.put("/v1/reps/rep-a", json=rep_body(weight=5))
    actions = await audit_actions(router_db)

    again = await api.post("/v1/reps:batch", json=batch, headers=key)
    other = await api.post("/v1/reps:batch", json={"reps": [{"id": "rep-b", **rep_body()}]}, headers=key)

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert other.status_code == 422, other.text
    assert await audit_actions(router_db) == actions
    stored = await api.get("/v1/reps/rep-a", headers=READER)
    assert stored.json()["weight"] == 5
    listed = await api.get("/v1/reps", headers=READER)
    assert [rep["id"] for rep in listed.json()["reps"]] == ["rep-a"]


async def test_a_batch_over_the_limit_is_refused(api: httpx.AsyncClient) -> None:
    response = await api.post("/v1/reps:batch", json={"reps": [{"id": f"r{i}", "name": "x"} for i in range(1001)]})
    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == ["reps"]


async def test_the_availability_toggle_takes_effect_at_once(api: httpx.AsyncClient, router_db: Storage) -> None:
    await api.put("/v1/teams/team-emea", json=TEAM)
    await api.put("/v1/reps/rep-ada", json=rep_body())
    off = await api.put("/v1/reps/rep-ada/availability", json={"available": False})
    assert off.status_code == 200
    assert (off.json()["available"], off.json()["version"]) == (False, 2)
    assert (await api.get("/v1/reps/rep-ada", headers=READER)).json()["available"] is False
    again = await api.put("/v1/reps/rep-ada/availability", json={"available": False})
    assert again.json()["version"] == 2
    assert (await audit_actions(router_db))[-1] == ("rep.availability", "rep-ada")
    missing = await api.put("/v1/reps/nobody/availability", json={"available": True})
    assert missing.status_code == 404
    bad = await api.put("/v1/reps/rep-ada/availability", json={"available": "maybe"})
    assert bad.status_code == 422
    assert [error["field"] for error in bad.json()["errors"]] == ["available"]
