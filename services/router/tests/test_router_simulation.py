"""Simulate and replay over HTTP on the real router app (SQLite and PostgreSQL): hand-computed, no side effects."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlmodel import SQLModel, select

from leadrelay.apikeys import ApiKey, Scope, Team, hash_key
from leadrelay.events import LeadReceived, LeadScored
from leadrelay.outbox import OutboxMessage
from leadrelay.stages import LeadStage
from leadrelay.testing import Storage, migrated, migrations_of
from router.assignments import service as assignments
from router.assignments.models import Assignment, RepLoad, RoutedLead
from router.config import RouterSettings
from router.fairness.models import RotationMember, RotationPool
from router.fairness.rotation import SCALE
from router.main import create_app

OPS_KEY = "lr_test_ops_0123456789abcdef"
OUTSIDER_KEY = "lr_test_outsider_0123456789abcdef"
ALL_DAY = [{"start": "00:00", "end": "24:00"}]
WEEK = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

DACH_DRAFT: dict[str, Any] = {
    "rules": [
        {"name": "dach", "when": {"field": "lead.country", "in": ["DE"]},
         "action": {"type": "team", "team": "team-x"}, "otherwise": {"type": "queue", "team": "team-x"}},
        {"name": "everyone", "when": "always",
         "action": {"type": "team", "team": "team-y", "strategy": "least_loaded"},
         "otherwise": {"type": "queue", "team": "team-y"}},
    ]
}  # fmt: skip
EVERYONE_TO_Y: dict[str, Any] = {"rules": [DACH_DRAFT["rules"][1]]}
SNAPSHOT_TABLES: list[type[SQLModel]] = [Assignment, RepLoad, RotationPool, RotationMember, RoutedLead, OutboxMessage]


@pytest.fixture
async def storage(database_url: str) -> AsyncIterator[Storage]:
    """Router's schema with an ops key (reps and routing, read and write) and a key without routing:read."""
    async with migrated(database_url, migrations_of("router")) as storage:
        async with storage.sessions() as session:
            session.add(ApiKey(id="key_ops", name="ops", team=Team.OPS, key_hash=hash_key(OPS_KEY),
                               scopes=[Scope.REPS_WRITE, Scope.ROUTING_READ, Scope.ROUTING_WRITE]))  # fmt: skip
            session.add(ApiKey(id="key_outsider", name="outsider", team=Team.MARKETING,
                               scopes=[Scope.REPS_WRITE], key_hash=hash_key(OUTSIDER_KEY)))  # fmt: skip
            await session.commit()
        yield storage


@pytest.fixture
async def api(storage: Storage) -> AsyncIterator[httpx.AsyncClient]:
    """The real router app (no broker, relay or consumer: the outbox keeps whatever is written), ops key, with
    team-x (rep-x1, rep-x2) and team-y (rep-y1, rep-y2), both UTC and open around the clock, and nothing in the outbox.
    """
    settings = RouterSettings(_env_file=None, database_url=storage.url)
    app = create_app(settings, CollectorRegistry())
    app.state.runtime = SimpleNamespace(sessions=storage.sessions, settings=settings)
    headers = {"Authorization": f"Bearer {OPS_KEY}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://router",
                                 headers=headers) as client:  # fmt: skip
        for team in ("team-x", "team-y"):
            body = {"name": team, "timezone": "UTC", "working_hours": dict.fromkeys(WEEK, ALL_DAY)}
            assert (await client.put(f"/v1/teams/{team}", json=body)).status_code == 201
        for rep, team in (("rep-x1", "team-x"), ("rep-x2", "team-x"), ("rep-y1", "team-y"), ("rep-y2", "team-y")):
            assert (await client.put(f"/v1/reps/{rep}", json={"name": rep, "teams": [team]})).status_code == 201
        async with storage.sessions() as session:
            for row in (await session.exec(select(OutboxMessage))).all():
                await session.delete(row)
            await session.commit()
        yield client


def scored(lead_id: str, country: str, at: datetime, **changes: Any) -> dict[str, Any]:
    """A lead.scored payload, as JSON."""
    lead = LeadReceived(lead_id=lead_id, email=f"{lead_id}@example.com", source="webinar", country=country,
                        received_at=at)  # fmt: skip
    event = LeadScored(lead_id=lead_id, score=70, stage=LeadStage.MQL, icp_version="1", explanation=[],
                       scored_at=at, lead=lead, grade="B2", mql=True, **changes)  # fmt: skip
    return event.model_dump(mode="json")


async def snapshot(storage: Storage) -> dict[str, list[str]]:
    """Every row of the tables routing writes to, comparable."""
    async with storage.sessions() as session:
        return {
            table.__name__: sorted(repr(row.model_dump()) for row in (await session.exec(select(table))).all())
            for table in SNAPSHOT_TABLES
        }


async def draft(api: httpx.AsyncClient, document: dict[str, Any]) -> int:
    """Store a routing draft; its version."""
    response = await api.post("/v1/routing/versions", json={"document": document, "note": "test"})
    assert response.status_code == 201, response.text
    version: int = response.json()["version"]
    return version


def pointers(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return [error["pointer"] for error in response.json()["errors"]]


async def test_a_draft_routes_in_memory_from_the_stored_standings_and_changes_nothing(
    api: httpx.AsyncClient, storage: Storage
) -> None:
    now = datetime.now(UTC)
    async with storage.sessions() as session:
        # team-x's rotation owes rep-x2 a lead; rep-y1 was given 3 leads today.
        session.add(RotationPool(pool_id="team:team-x", picks=5))
        session.add(RotationMember(pool_id="team:team-x", rep_id="rep-x1", credit=-SCALE // 2, last_seen=4,
                                   last_won=4, waiting_since=3, wins=3))  # fmt: skip
        session.add(RotationMember(pool_id="team:team-x", rep_id="rep-x2", credit=SCALE // 2, last_seen=4,
                                   last_won=1, waiting_since=2, wins=2))  # fmt: skip
        session.add(RepLoad(rep_id="rep-y1", day=now.date(), assigned=3))
        await session.commit()
    before = await snapshot(storage)
    leads = [scored("lead-de-1", "DE", now), scored("lead-us", "US", now), scored("lead-de-2", "DE", now),
             scored("lead-fr", "FR", now)]  # fmt: skip

    response = await api.post("/v1/routing/simulate", json={"leads": leads, "document": DACH_DRAFT})

    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["version"], answer["leads"]) == ("draft", 4)
    routed = [(r["lead_id"], r["outcome"], r["rep_id"], r["team_id"], r["rule"]) for r in answer["routings"]]
    # DE: rep-x2 (owed a lead), then rep-x1 (equal credit, waiting longer). Others: least loaded in team-y,
    # where rep-y1 has 3 today, so rep-y2 takes both (its second lead counted in memory: 1 < 3).
    assert routed == [
        ("lead-de-1", "assigned", "rep-x2", "team-x", "dach"),
        ("lead-us", "assigned", "rep-y2", "team-y", "everyone"),
        ("lead-de-2", "assigned", "rep-x1", "team-x", "dach"),
        ("lead-fr", "assigned", "rep-y2", "team-y", "everyone"),
    ]
    first = answer["routings"][0]["explanation"]
    assert (first["version"], first["rule"], first["evaluated"]) == (
        "draft",
        "dach",
        [{"rule": "dach", "matched": True}],
    )
    pick = first["steps"][0]["pick"]
    assert (pick["pool_id"], pick["sequence"]) == ("team:team-x", 5)
    assert {c["rep_id"]: c["credit_before"] for c in pick["candidates"]} == {"rep-x1": -0.5, "rep-x2": 0.5}
    second = answer["routings"][3]["explanation"]
    assert second["evaluated"][0] == {"rule": "dach", "matched": False, "at": "/rules/0/when", "field": "lead.country",
                                      "seen": "FR", "reason": second["evaluated"][0]["reason"]}  # fmt: skip
    assert {c["rep_id"]: c["load"] for c in second["steps"][0]["pick"]["candidates"]} == {"rep-y1": 3, "rep-y2": 1}
    assert await snapshot(storage) == before
    assert await storage.outbox_count() == 0


async def test_a_stored_version_the_active_ruleset_and_the_short_form(api: httpx.AsyncClient, storage: Storage) -> None:
    version = await draft(api, EVERYONE_TO_Y)
    sketch = {"lead": {"country": "DE"}, "score": {"mql": True, "grade": "A1"}}
    before = await snapshot(storage)

    under_version = await api.post("/v1/routing/simulate", json={"leads": [sketch, sketch], "version": version})
    under_active = await api.post("/v1/routing/simulate", json={"leads": [sketch]})

    assert under_version.status_code == 200, under_version.text
    routings = under_version.json()["routings"]
    assert under_version.json()["version"] == str(version)
    # Least loaded, both empty: the rep waiting longest, then by id; the second lead goes to the other rep.
    assert [(r["lead_id"], r["rep_id"], r["rule"]) for r in routings] == [
        ("lead-1", "rep-y1", "everyone"), ("lead-2", "rep-y2", "everyone"),
    ]  # fmt: skip
    # Nothing signed yet: the built-in ruleset, whose default rep does not exist here, so the default queue.
    assert under_active.status_code == 200, under_active.text
    only = under_active.json()["routings"][0]
    assert (under_active.json()["version"], only["outcome"], only["rep_id"], only["team_id"]) == (
        "builtin",
        "queued",
        None,
        "default",
    )
    assert only["explanation"]["steps"][0]["skipped"] == [{"rep_id": "rep-default", "reason": "unknown_rep"}]
    assert await snapshot(storage) == before


async def test_at_explores_working_hours(api: httpx.AsyncClient) -> None:
    hours = {day: [{"start": "09:00", "end": "17:00"}] for day in ("mon", "tue", "wed", "thu", "fri")}
    office = {"name": "Office", "timezone": "Europe/Berlin", "working_hours": hours}
    assert (await api.put("/v1/teams/team-office", json=office)).status_code == 201
    assert (await api.put("/v1/reps/rep-o", json={"name": "O", "teams": ["team-office"]})).status_code == 201
    document = {"rules": [{"name": "all", "when": "always", "action": {"type": "team", "team": "team-office"},
                           "otherwise": {"type": "queue", "team": "team-office"}}]}  # fmt: skip
    lead = scored("lead-1", "DE", datetime(2026, 11, 27, tzinfo=UTC))
    answers = {}
    for at in ("2026-11-30T09:30:00+01:00", "2026-11-28T09:30:00+01:00", "2026-11-30T08:30:00Z"):
        response = await api.post("/v1/routing/simulate", json={"leads": [lead], "document": document, "at": at})
        assert response.status_code == 200, response.text
        routing = response.json()["routings"][0]
        answers[at] = (routing["outcome"], routing["rep_id"], routing["explanation"]["steps"][0]["skipped"])
    assert answers == {
        "2026-11-30T09:30:00+01:00": ("assigned", "rep-o", []),  # a Monday, in office hours
        "2026-11-28T09:30:00+01:00": ("queued", None, [{"rep_id": "rep-o", "reason": "outside_hours"}]),
        "2026-11-30T08:30:00Z": ("assigned", "rep-o", []),  # 09:30 in Berlin
    }


async def test_bad_input_is_named_and_changes_nothing(api: httpx.AsyncClient, storage: Storage) -> None:
    lead = scored("lead-1", "DE", datetime.now(UTC))
    before = await snapshot(storage)
    catch_all_first = {"rules": [{**DACH_DRAFT["rules"][0], "when": "always"}, DACH_DRAFT["rules"][1]]}
    bad_action = {"rules": [{**DACH_DRAFT["rules"][1], "action": {"type": "team"}}]}
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"leads": [lead], "document": catch_all_first}, ["/document/rules/0/when"]),
        ({"leads": [lead], "document": bad_action}, ["/document/rules/0/action/team"]),
        ({"leads": [lead], "version": 7}, ["/version"]),
        ({"leads": [lead], "version": 1, "document": DACH_DRAFT}, ["/version"]),
        ({"leads": [{**lead, "score": 101}]}, ["/leads/0/score"]),
        ({"leads": [{**lead, "lead": {**lead["lead"], "email": None}}]}, ["/leads/0/lead/email"]),
        ({"leads": [lead, {**lead, "colour": "red"}]}, ["/leads/1/colour"]),
        ({"leads": [{"score": {"grade": "Z9"}}]}, ["/leads/0/score/grade"]),
        ({"leads": [{"lead": {"shoe_size": 9}, "score": {}}]}, ["/leads/0/lead/shoe_size"]),
        ({"leads": []}, ["/leads"]),
        ({"leads": [lead] * 1001}, ["/leads"]),
        ({"leads": [lead], "at": "2026-11-30T09:30:00"}, ["/at"]),
    ]
    for body, expected in cases:
        assert pointers(await api.post("/v1/routing/simulate", json=body)) == expected, body
    assert await snapshot(storage) == before


async def test_keys_need_routing_read(api: httpx.AsyncClient) -> None:
    version = await draft(api, DACH_DRAFT)
    body = {"leads": [scored("lead-1", "DE", datetime.now(UTC))]}
    calls = [("/v1/routing/simulate", body), (f"/v1/routing/versions/{version}/replay", None)]
    for path, json in calls:
        anonymous = await api.post(path, json=json, headers={"Authorization": ""})
        outsider = await api.post(path, json=json, headers={"Authorization": f"Bearer {OUTSIDER_KEY}"})
        assert (anonymous.status_code, outsider.status_code) == (401, 403), path
        assert outsider.json()["detail"] == "The API key lacks the scope(s): routing:read."
        assert outsider.headers["content-type"] == "application/problem+json"


async def _scored_history(storage: Storage, now: datetime) -> None:
    """Leads scored over the last days, each with its actual first assignment (all to team-y)."""
    history = [
        # lead, country, scored days ago, first assignment's rep (None: never routed)
        ("lead-0", "DE", 40, "rep-y1"),  # older than 30 days
        ("lead-1", "DE", 6, "rep-y2"),
        ("lead-2", "US", 5, "rep-y1"),
        ("lead-3", "DE", 4, "rep-y1"),
        ("lead-4", "FR", 3, "rep-y2"),
        ("lead-5", "US", 2, "rep-y1"),
        ("lead-6", "GB", 1, "rep-y2"),
        ("lead-7", "US", 0.5, None),
    ]
    async with storage.sessions() as session:
        leads = [LeadScored.model_validate(scored(lead_id, country, now - timedelta(days=ago)))
                 for lead_id, country, ago, _ in history]  # fmt: skip
        await assignments.remember(session=session, leads=leads)
        for lead_id, _, ago, rep_id in history:
            if rep_id is not None:
                session.add(Assignment(lead_id=lead_id, sequence=1, rep_id=rep_id, team_id="team-y",
                                       rule_path=["everyone"], routing_version="1",
                                       assigned_at=now - timedelta(days=ago)))  # fmt: skip
        # A later reassignment does not count: replay compares with the first assignment.
        session.add(Assignment(lead_id="lead-3", sequence=2, rep_id="rep-x1", team_id="team-x",
                               rule_path=["everyone"], routing_version="1", trigger="manual"))  # fmt: skip
        await session.commit()


async def test_replay_moves_exactly_the_leads_the_draft_sends_elsewhere(
    api: httpx.AsyncClient, storage: Storage
) -> None:
    now = datetime.now(UTC)
    await _scored_history(storage, now)
    round_robin = {"rules": [DACH_DRAFT["rules"][0], {**DACH_DRAFT["rules"][1], "action": {
        "type": "team", "team": "team-y", "strategy": "weighted_round_robin"}}]}  # fmt: skip
    version = await draft(api, round_robin)
    before = await snapshot(storage)

    response = await api.post(f"/v1/routing/versions/{version}/replay")

    assert response.status_code == 200, response.text
    report = response.json()
    # In scored order: DE leads alternate rep-x1, rep-x2; the others alternate rep-y1, rep-y2 (lead-2, -4, -5, -6,
    # -7), which is where lead-2, -4, -5 and -6 went before: only the DE leads change hands.
    assert (report["version"], report["days"], report["leads"], report["not_routed_before"]) == (version, 30, 7, 1)
    assert report["per_team"] == [
        {"team_id": "team-x", "before": 0, "after": 2},
        {"team_id": "team-y", "before": 6, "after": 5},
    ]
    assert report["per_rep"] == [
        {"rep_id": "rep-x1", "before": 0, "after": 1},
        {"rep_id": "rep-x2", "before": 0, "after": 1},
        {"rep_id": "rep-y1", "before": 3, "after": 3},
        {"rep_id": "rep-y2", "before": 3, "after": 2},
    ]
    assert report["per_outcome"] == {"assigned": {"before": 6, "after": 7}, "queued": {"before": 0, "after": 0},
                                     "nurtured": {"before": 0, "after": 0}}  # fmt: skip
    assert report["changed"] == 2
    assert report["changed_leads"] == [
        {"lead_id": "lead-1", "before": {"outcome": "assigned", "rep_id": "rep-y2", "team_id": "team-y",
                                         "rule": "everyone"},
         "after": {"outcome": "assigned", "rep_id": "rep-x1", "team_id": "team-x", "rule": "dach"}},
        {"lead_id": "lead-3", "before": {"outcome": "assigned", "rep_id": "rep-y1", "team_id": "team-y",
                                         "rule": "everyone"},
         "after": {"outcome": "assigned", "rep_id": "rep-x2", "team_id": "team-x", "rule": "dach"}},
    ]  # fmt: skip
    assert await snapshot(storage) == before  # the outbox holds only the draft's announcement

    longer = (await api.post(f"/v1/routing/versions/{version}/replay", params={"days": 60})).json()
    assert (longer["leads"], longer["changed"], longer["changed_leads"][0]["lead_id"]) == (8, 3, "lead-0")


async def test_replay_of_an_unknown_version_or_a_bad_window(api: httpx.AsyncClient) -> None:
    missing = await api.post("/v1/routing/versions/9/replay")
    assert (missing.status_code, missing.json()["detail"]) == (404, "No routing version 9.")
    assert missing.headers["content-type"] == "application/problem+json"
    version = await draft(api, DACH_DRAFT)
    for days in (0, 366, "week"):
        response = await api.post(f"/v1/routing/versions/{version}/replay", params={"days": days})
        assert pointers(response) == ["/days"], days
    empty = await api.post(f"/v1/routing/versions/{version}/replay", params={"days": 1})
    assert (empty.status_code, empty.json()["leads"], empty.json()["per_team"]) == (200, 0, [])
