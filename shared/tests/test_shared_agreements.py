"""Agreements on SQLite and PostgreSQL: sign-off rules, one active version under races, diff, YAML, validation."""

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select

from leadrelay.agreements import AgreementKind, DocumentError, agreement_router, all_of, any_of, unique_names, yamlio
from leadrelay.agreements import service as agreements
from leadrelay.agreements.diff import Change, diff
from leadrelay.agreements.models import AgreementTransition, Transition
from leadrelay.apikeys import ApiKey, Scope, Team, hash_key
from leadrelay.audit import AuditEntry
from leadrelay.db import create_engine, create_session_factory
from leadrelay.events import parse_event
from leadrelay.outbox import OutboxMessage
from leadrelay.problems import PROBLEM_JSON, ProblemException, install_problem_handlers
from leadrelay.testing import Storage, migrated, migrations_of


class Rule(BaseModel):
    """A test document's item."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    points: int = Field(ge=-100, le=100)


class Doc(BaseModel):
    """A small document with a structural and a semantic constraint."""

    model_config = ConfigDict(extra="forbid")

    rules: list[Rule]
    threshold: int = Field(ge=0, le=100)


def check(document: Doc) -> list[DocumentError]:
    errors = unique_names([rule.name for rule in document.rules], at="/rules")
    if document.threshold > sum(rule.points for rule in document.rules if rule.points > 0):
        errors.append(("/threshold", "unreachable"))
    return errors


CO_SIGNED = AgreementKind(
    name="icp",
    title="test profile",
    document=Doc,
    check=check,
    approval=all_of(Team.MARKETING, Team.SALES),
    source="leadrelay/test",
    example={"rules": [{"name": "a", "points": 50}], "threshold": 40},
    write_scopes=(Scope.ICP_WRITE,),
    approve_scopes=(Scope.ICP_APPROVE,),
)
EITHER = dataclasses.replace(CO_SIGNED, name="routing", approval=any_of(Team.SALES, Team.OPS))


def key(key_id: str, team: Team) -> ApiKey:
    return ApiKey(
        id=key_id, name=key_id.removeprefix("key_"), team=team, scopes=list(Scope), key_hash=hash_key(key_id * 3)
    )


AUTHOR = key("key_author", Team.OPS)
M1, M2 = key("key_m1", Team.MARKETING), key("key_m2", Team.MARKETING)
S1, S2 = key("key_s1", Team.SALES), key("key_s2", Team.SALES)
OPS = key("key_ops", Team.OPS)
INTEGRATION = key("key_crm", Team.INTEGRATION)
KEYS = {k.id: k for k in (AUTHOR, M1, M2, S1, S2, OPS, INTEGRATION)}


def document(threshold: int = 40, *names: str) -> Doc:
    return Doc(rules=[Rule(name=name, points=50) for name in names or ("a",)], threshold=threshold)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Storage]:
    """Router's schema (which holds the agreements tables) on the test's backend."""
    async with migrated(database_url, migrations_of("router")) as storage:
        yield storage


async def run(storage: Storage, kind: AgreementKind[Any], step: tuple[str, Any, ApiKey]) -> int:
    """One step of a sign-off story; answers the HTTP status the API would give."""
    action, version, actor = step
    async with storage.sessions() as session:
        try:
            if action == "draft":
                await agreements.draft(session, kind=kind, document=document(), note="", actor=actor)
                return 201
            if action == "approve":
                await agreements.approve(session, kind=kind, version=version, actor=actor)
            else:
                await agreements.reject(session, kind=kind, version=version, actor=actor, reason="no")
            return 200
        except ProblemException as exc:
            return exc.problem.status


async def state(storage: Storage, kind: str) -> dict[int, tuple[str, list[str], list[str]]]:
    """version -> (status, approved teams, history actions)."""
    async with storage.sessions() as session:
        records = await agreements.get_all(session, kind=kind)
    return {
        record.version.version: (
            record.version.status,
            list(dict.fromkeys(approval.team for approval in record.approvals)),
            [entry.action.value for entry in record.history],
        )
        for record in records
    }


# (story, kind, steps as (action, version, key, answer), final state of each version)
SIGN_OFF = [
    pytest.param(
        CO_SIGNED,
        [("draft", None, AUTHOR, 201), ("approve", 1, M1, 200), ("approve", 1, M2, 200)],
        {1: ("draft", ["marketing"], ["drafted", "approved", "approved"])},
        id="two-keys-of-one-team-count-once",
    ),
    pytest.param(
        CO_SIGNED,
        [("draft", None, AUTHOR, 201), ("approve", 1, M1, 200), ("approve", 1, M2, 200), ("approve", 1, S1, 200)],
        {1: ("active", ["marketing", "sales"], ["drafted", "approved", "approved", "approved", "activated"])},
        id="every-required-team-activates",
    ),
    pytest.param(
        CO_SIGNED,
        [("draft", None, M1, 201), ("approve", 1, M1, 403), ("approve", 1, M2, 200), ("approve", 1, S1, 200)],
        {1: ("active", ["marketing", "sales"], ["drafted", "approved", "approved", "activated"])},
        id="the-author-cannot-approve-but-a-teammate-can",
    ),
    pytest.param(
        CO_SIGNED,
        [("draft", None, AUTHOR, 201), ("approve", 1, OPS, 403), ("approve", 1, INTEGRATION, 403)],
        {1: ("draft", [], ["drafted"])},
        id="a-team-that-does-not-sign-is-refused",
    ),
    pytest.param(
        CO_SIGNED,
        [("draft", None, AUTHOR, 201), ("reject", 1, OPS, 403), ("reject", 1, S1, 200), ("approve", 1, M1, 409)],
        {1: ("rejected", [], ["drafted", "rejected"])},
        id="a-rejected-version-never-activates",
    ),
    pytest.param(
        CO_SIGNED,
        [
            ("draft", None, AUTHOR, 201),
            ("approve", 1, M1, 200),
            ("reject", 1, S1, 200),
            ("approve", 1, S2, 409),
            ("reject", 1, S2, 409),
        ],
        {1: ("rejected", ["marketing"], ["drafted", "approved", "rejected"])},
        id="rejection-after-an-approval-then-approval",
    ),
    pytest.param(
        CO_SIGNED,
        [("draft", None, AUTHOR, 201), ("approve", 1, M1, 200), ("approve", 1, M1, 200), ("approve", 1, M1, 200)],
        {1: ("draft", ["marketing"], ["drafted", "approved"])},
        id="one-key-approving-twice-counts-once",
    ),
    pytest.param(
        EITHER,
        [("draft", None, AUTHOR, 201), ("approve", 1, M1, 403), ("approve", 1, OPS, 200)],
        {1: ("active", ["ops"], ["drafted", "approved", "activated"])},
        id="routing-any-one-of-sales-or-ops",
    ),
    pytest.param(
        EITHER,
        [("draft", None, S1, 201), ("approve", 1, S1, 403), ("approve", 1, S2, 200), ("approve", 1, OPS, 409)],
        {1: ("active", ["sales"], ["drafted", "approved", "activated"])},
        id="routing-active-version-cannot-be-approved-again",
    ),
    pytest.param(
        EITHER,
        [
            ("draft", None, AUTHOR, 201),
            ("approve", 1, S1, 200),
            ("draft", None, AUTHOR, 201),
            ("approve", 2, OPS, 200),
            ("approve", 1, S2, 409),
            ("reject", 1, S2, 409),
        ],
        {
            2: ("active", ["ops"], ["drafted", "approved", "activated"]),
            1: ("superseded", ["sales"], ["drafted", "approved", "activated", "superseded"]),
        },
        id="activation-supersedes-the-active-version",
    ),
    pytest.param(
        CO_SIGNED,
        [
            ("draft", None, AUTHOR, 201),
            ("draft", None, AUTHOR, 201),
            ("approve", 1, M1, 200),
            ("approve", 2, M1, 200),
            ("approve", 2, S1, 200),
            ("approve", 1, S1, 200),
        ],
        {
            2: ("active", ["marketing", "sales"], ["drafted", "approved", "approved", "activated"]),
            1: ("superseded", ["marketing", "sales"], ["drafted", "approved", "approved", "superseded"]),
        },
        id="an-older-version-completing-late-never-moves-the-active-version-back",
    ),
]


@pytest.mark.parametrize(("kind", "steps", "final"), SIGN_OFF)
async def test_sign_off_rules(
    db: Storage,
    kind: AgreementKind[Any],
    steps: list[tuple[str, Any, ApiKey, int]],
    final: dict[int, tuple[str, list[str], list[str]]],
) -> None:
    answers = [await run(db, kind, (action, version, actor)) for action, version, actor, _ in steps]
    assert answers == [expected for *_, expected in steps]
    assert await state(db, kind.name) == final
    async with db.sessions() as session:
        active = await agreements.get_active(session, kind=kind.name)
    actives = [version for version, (status, *_) in final.items() if status == "active"]
    assert (active.version.version if active else None) == (actives[0] if actives else None)


async def test_every_transition_is_published_and_audited_in_order(db: Storage) -> None:
    for step in [("draft", None, AUTHOR), ("approve", 1, M1), ("approve", 1, S1), ("draft", None, AUTHOR)]:
        assert await run(db, CO_SIGNED, step) in {200, 201}
    for step in [("approve", 2, M2), ("approve", 2, S2)]:
        assert await run(db, CO_SIGNED, step) == 200

    async with db.sessions() as session:
        rows = (await session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id)))).all()
        entries = (await session.exec(select(AuditEntry).order_by(col(AuditEntry.id)))).all()
        v1 = await agreements.get(session, kind="icp", version=1)
    published = [parse_event(row.payload) for row in rows]
    expected = [
        ("agreement.drafted", 1, "draft", "key_author"),
        ("agreement.approved", 1, "draft", "key_m1"),
        ("agreement.approved", 1, "draft", "key_s1"),
        ("agreement.activated", 1, "active", "key_s1"),
        ("agreement.drafted", 2, "draft", "key_author"),
        ("agreement.approved", 2, "draft", "key_m2"),
        ("agreement.approved", 2, "draft", "key_s2"),
        ("agreement.superseded", 1, "superseded", "key_s2"),
        ("agreement.activated", 2, "active", "key_s2"),
    ]
    assert [
        (event.type, event.data.version, event.data.status, event.data.actor_key_id)  # type: ignore[attr-defined]
        for event in published
    ] == expected
    assert {row.key for row in rows} == {"icp"}
    assert {row.topic for row in rows} == {"leadrelay.agreements"}
    assert all(event.source == "leadrelay/test" for event in published)
    assert [(entry.action, entry.target, entry.actor_key_id) for entry in entries] == [
        (f"agreement.{kind.split('.')[1]}", f"icp v{version}", actor) for kind, version, _, actor in expected
    ]
    assert entries[7].detail == {"status": "superseded", "team": "sales", "reason": "superseded by v2"}
    assert v1 is not None
    superseded = v1.history[-1]
    assert (superseded.action, superseded.key_id, superseded.key_name, superseded.team, superseded.reason) == (
        Transition.SUPERSEDED,
        "key_s2",
        "s2",
        "sales",
        "superseded by v2",
    )


async def test_an_invalid_document_is_refused_with_pointers_and_nothing_is_stored(db: Storage) -> None:
    bad = Doc(rules=[Rule(name="a", points=10), Rule(name="a", points=5)], threshold=90)
    async with db.sessions() as session:
        with pytest.raises(ProblemException) as refused:
            await agreements.draft(session, kind=CO_SIGNED, document=bad, note="", actor=AUTHOR)
    problem = refused.value.problem
    assert problem.status == 422
    assert [(error.pointer, error.field) for error in problem.errors] == [
        ("/document/rules/1/name", "document.rules.1.name"),
        ("/document/threshold", "document.threshold"),
    ]
    assert await state(db, "icp") == {}
    assert await db.outbox_count() == 0


async def test_one_active_version_is_enforced_by_the_database_too(db: Storage) -> None:
    for step in [("draft", None, AUTHOR), ("draft", None, AUTHOR), ("approve", 1, OPS)]:
        assert await run(db, EITHER, step) in {200, 201}
    async with db.sessions() as session:
        v2 = await agreements.get(session, kind="routing", version=2)
        assert v2 is not None
        v2.version.status = agreements.VersionStatus.ACTIVE
        session.add(v2.version)
        with pytest.raises(Exception, match=r"(?i)unique"):
            await session.commit()


# Concurrency: each contender has its own engine (its own connections), as separate processes would.


async def contenders(url: str, count: int, stack: AsyncExitStack) -> list[Storage]:
    storages = []
    for _ in range(count):
        engine = create_engine(url)
        stack.push_async_callback(engine.dispose)
        storages.append(Storage(url, engine, create_session_factory(engine)))
    return storages


async def test_concurrent_final_approvals_activate_exactly_once(db: Storage) -> None:
    signers = [key(f"key_sales_{index}", Team.SALES) for index in range(8)]
    for step in [("draft", None, AUTHOR), ("approve", 1, M1)]:
        assert await run(db, CO_SIGNED, step) in {200, 201}
    async with AsyncExitStack() as stack:
        storages = await contenders(db.url, len(signers), stack)
        answers = await asyncio.gather(
            *(
                run(storage, CO_SIGNED, ("approve", 1, signer))
                for storage, signer in zip(storages, signers, strict=True)
            )
        )
    assert sorted(answers) == [200] + [409] * (len(signers) - 1)
    async with db.sessions() as session:
        activations = (
            await session.exec(select(AgreementTransition).where(AgreementTransition.action == Transition.ACTIVATED))
        ).all()
        published = (
            await session.exec(select(OutboxMessage).where(OutboxMessage.event_type == "agreement.activated"))
        ).all()
    assert len(activations) == 1
    assert len(published) == 1
    status, teams, history = (await state(db, "icp"))[1]
    assert (status, teams, history) == (
        "active",
        ["marketing", "sales"],
        ["drafted", "approved", "approved", "activated"],
    )


async def test_two_versions_racing_to_activation_leave_the_newest_active(db: Storage) -> None:
    kinds = [dataclasses.replace(CO_SIGNED, name=f"race{round_}") for round_ in range(5)]
    for kind in kinds:
        for step in [("draft", None, AUTHOR), ("draft", None, AUTHOR), ("approve", 1, M1), ("approve", 2, M2)]:
            assert await run(db, kind, step) in {200, 201}
    async with AsyncExitStack() as stack:
        first, second = await contenders(db.url, 2, stack)
        for kind in kinds:
            answers = await asyncio.gather(run(first, kind, ("approve", 1, S1)), run(second, kind, ("approve", 2, S2)))
            assert answers == [200, 200]
    for kind in kinds:
        final = await state(db, kind.name)
        assert {version: status for version, (status, *_) in final.items()} == {2: "active", 1: "superseded"}
        async with db.sessions() as session:
            active = await agreements.get_active(session, kind=kind.name)
        assert active is not None
        assert active.version.version == 2


# Diff


def changes(old: Any, new: Any) -> list[tuple[str, str, Any, Any]]:
    return [(change.op, change.path, change.from_, change.to) for change in diff(old, new)]


def test_diff_walks_objects_and_arrays_path_by_path() -> None:
    old = {"rules": [{"name": "a", "points": 10}, {"name": "b", "points": 5}, {"name": "c", "points": 1}], "t": 40}
    new = {"rules": [{"name": "a", "points": 20, "field": "x"}], "t": 40, "note/~": None}
    assert changes(old, new) == [
        ("replace", "/rules/0/points", 10, 20),
        ("add", "/rules/0/field", None, "x"),
        ("remove", "/rules/2", {"name": "c", "points": 1}, None),
        ("remove", "/rules/1", {"name": "b", "points": 5}, None),
        ("add", "/note~1~0", None, None),
    ]
    assert changes(new, new) == []
    assert changes({"a": [1]}, {"a": [1, 2, 3]}) == [("add", "/a/1", None, 2), ("add", "/a/2", None, 3)]


def test_diff_counts_a_changed_type_as_a_change() -> None:
    assert changes({"a": 1}, {"a": 1.0}) == [("replace", "/a", 1, 1.0)]
    assert changes({"a": 1}, {"a": True}) == [("replace", "/a", 1, True)]
    assert changes({"a": {"b": 1}}, {"a": [1]}) == [("replace", "/a", {"b": 1}, [1])]
    assert changes(1, 2) == [("replace", "", 1, 2)]


def test_a_change_serialises_with_from_and_to() -> None:
    change = Change(op="replace", path="/t", from_=1, to=2)
    assert change.model_dump() == {"op": "replace", "path": "/t", "from": 1, "to": 2}


# YAML


def test_yaml_load_refuses_aliases_and_non_mappings() -> None:
    with pytest.raises(yamlio.YamlInvalid, match="aliases"):
        yamlio.load("a: &x [1, 2]\nb: *x\n")
    with pytest.raises(yamlio.YamlInvalid, match="mapping"):
        yamlio.load("- 1\n- 2\n")
    with pytest.raises(yamlio.YamlInvalid, match="line 2"):
        yamlio.load("a: [1, 2\nb: c: d\n")


# Through HTTP: an app with the agreements router of one kind, on the test's backend.

SECRETS = {k.id: f"lr_test_{k.id}_0123456789" for k in (AUTHOR, M1, S1)}
READER = "lr_test_reader_0123456789"


@pytest.fixture
async def client(db: Storage) -> AsyncIterator[httpx.AsyncClient]:
    async with db.sessions() as session:
        for key_id, secret in SECRETS.items():
            stored = KEYS[key_id].model_copy(update={"key_hash": hash_key(secret)})
            session.add(ApiKey.model_validate(stored.model_dump()))
        session.add(ApiKey(id="key_reader", name="reader", team=Team.SALES, scopes=[], key_hash=hash_key(READER)))
        await session.commit()
    app = FastAPI()
    install_problem_handlers(app)
    app.state.runtime = SimpleNamespace(sessions=db.sessions)
    app.include_router(agreement_router(CO_SIGNED))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


def auth(key_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {SECRETS[key_id]}"}


GOOD = {"rules": [{"name": "webinar", "points": 40}, {"name": "country", "points": 30}], "threshold": 60}


async def test_http_draft_approve_activate_and_read(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/icp/active", headers=auth("key_author"))).status_code == 404
    drafted = await client.post(
        "/v1/icp/versions", json={"document": GOOD, "note": "first"}, headers=auth("key_author")
    )
    assert drafted.status_code == 201, drafted.text
    body = drafted.json()
    assert (body["version"], body["status"], body["note"], body["document"]) == (1, "draft", "first", GOOD)
    assert body["author"] == {"key_id": "key_author", "name": "author", "team": "ops"}
    assert body["required"] == {"all_of": ["marketing", "sales"]}

    refused = await client.post("/v1/icp/versions/1/approvals", headers={"Authorization": f"Bearer {READER}"})
    assert refused.status_code == 403
    assert refused.json()["detail"] == "The API key lacks the scope(s): icp:approve."
    assert (await client.post("/v1/icp/versions/1/approvals", headers=auth("key_m1"))).status_code == 200
    approved = await client.post("/v1/icp/versions/1/approvals", json={"note": "ok"}, headers=auth("key_s1"))
    assert approved.status_code == 200, approved.text
    version = approved.json()
    assert version["status"] == "active"
    assert version["approved_teams"] == ["marketing", "sales"]
    assert [(a["team"], a["key_id"], a["name"]) for a in version["approvals"]] == [
        ("marketing", "key_m1", "m1"),
        ("sales", "key_s1", "s1"),
    ]
    assert [(h["action"], h["key_id"], h["team"], h["reason"]) for h in version["history"]] == [
        ("drafted", "key_author", "ops", None),
        ("approved", "key_m1", "marketing", None),
        ("approved", "key_s1", "sales", "ok"),
        ("activated", "key_s1", "sales", None),
    ]
    assert version["activated_at"] is not None
    active = await client.get("/v1/icp/active", headers={"Authorization": f"Bearer {READER}"})  # read: any valid key
    assert active.json() == version
    assert (await client.get("/v1/icp/versions/1", headers=auth("key_m1"))).json() == version
    listed = await client.get("/v1/icp/versions", headers=auth("key_m1"))
    assert [v["version"] for v in listed.json()["versions"]] == [1]

    missing = await client.post("/v1/icp/versions/7/rejections", json={"reason": "x"}, headers=auth("key_s1"))
    assert (missing.status_code, missing.headers["content-type"]) == (404, PROBLEM_JSON)
    closed = await client.post("/v1/icp/versions/1/rejections", json={"reason": "late"}, headers=auth("key_s1"))
    assert closed.status_code == 409
    assert (await client.post("/v1/icp/versions/1/rejections", json={}, headers=auth("key_s1"))).status_code == 422


async def test_http_structural_and_semantic_errors_point_at_the_field(client: httpx.AsyncClient) -> None:
    structural = {"rules": [{"name": "a", "points": 400}, {"name": "b", "points": 1, "colour": "red"}], "threshold": 1}
    answer = await client.post("/v1/icp/versions", json={"document": structural}, headers=auth("key_author"))
    assert (answer.status_code, answer.headers["content-type"]) == (422, PROBLEM_JSON)
    assert {error["pointer"] for error in answer.json()["errors"]} == {
        "/document/rules/0/points",
        "/document/rules/1/colour",
    }
    semantic = {"rules": [{"name": "a", "points": 10}, {"name": "a", "points": 10}], "threshold": 99}
    answer = await client.post("/v1/icp/versions", json={"document": semantic}, headers=auth("key_author"))
    assert answer.status_code == 422
    problem = answer.json()
    assert problem["type"] == "urn:leadrelay:problem:validation-error"
    assert [(e["pointer"], e["field"]) for e in problem["errors"]] == [
        ("/document/rules/1/name", "document.rules.1.name"),
        ("/document/threshold", "document.threshold"),
    ]
    assert (await client.get("/v1/icp/versions", headers=auth("key_author"))).json() == {"versions": []}


async def test_http_export_import_export_is_byte_identical(client: httpx.AsyncClient) -> None:
    note = 'Zürich: "quotes", colons: and a # hash\nsecond line'
    document = {**GOOD, "rules": [*GOOD["rules"], {"name": "2026-01-01", "points": -5}]}  # a date-like string
    drafted = await client.post("/v1/icp/versions", json={"document": document, "note": note}, headers=auth("key_m1"))
    assert drafted.status_code == 201, drafted.text
    first = await client.get("/v1/icp/versions/1/export", headers=auth("key_m1"))
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("application/yaml")
    assert yamlio.load(first.text) == {"kind": "icp", "note": note, "document": document}

    yaml_headers = {**auth("key_m1"), "Content-Type": "application/yaml"}
    imported = await client.post("/v1/icp/versions:import", content=first.content, headers=yaml_headers)
    assert imported.status_code == 201, imported.text
    assert (imported.json()["version"], imported.json()["status"], imported.json()["note"]) == (2, "draft", note)
    second = await client.get("/v1/icp/versions/2/export", headers=auth("key_m1"))
    assert second.content == first.content
    same = await client.get("/v1/icp/versions/1/diff/2", headers=auth("key_m1"))
    assert same.json() == {"kind": "icp", "from": 1, "to": 2, "changes": []}


async def test_http_diff_between_versions(client: httpx.AsyncClient) -> None:
    changed = {"rules": [{"name": "webinar", "points": 50}], "threshold": 50}
    for document in (GOOD, changed):
        answer = await client.post("/v1/icp/versions", json={"document": document}, headers=auth("key_m1"))
        assert answer.status_code == 201
    answer = await client.get("/v1/icp/versions/1/diff/2", headers=auth("key_m1"))
    assert answer.json() == {
        "kind": "icp",
        "from": 1,
        "to": 2,
        "changes": [
            {"op": "replace", "path": "/rules/0/points", "from": 40, "to": 50},
            {"op": "remove", "path": "/rules/1", "from": {"name": "country", "points": 30}, "to": None},
            {"op": "replace", "path": "/threshold", "from": 60, "to": 50},
        ],
    }
    assert (await client.get("/v1/icp/versions/1/diff/9", headers=auth("key_m1"))).status_code == 404


@pytest.mark.parametrize(
    ("content_type", "body", "status", "pointers"),
    [
        pytest.param("application/json", b"{}", 415, [], id="not-yaml"),
        pytest.param("application/yaml", b"kind: icp\ndocument: [1, 2\n", 400, [], id="broken-yaml"),
        pytest.param("application/yaml", b"\xff\xfe", 400, [], id="not-utf8"),
        pytest.param("application/yaml", b"- a list\n", 400, [], id="not-a-mapping"),
        pytest.param("application/yaml", b"kind: sla\ndocument: {}\n", 422, ["/kind"], id="wrong-kind"),
        pytest.param(
            "application/yaml",
            b"kind: icp\nnote: n\ndocument:\n  rules:\n  - name: a\n    points: 500\n  threshold: 1\n",
            422,
            ["/document/rules/0/points"],
            id="structural",
        ),
        pytest.param(
            "application/yaml",
            b"kind: icp\ndocument:\n  rules: [{name: a, points: 5}]\n  threshold: 10\nextra: 1\n",
            422,
            ["/extra"],
            id="unknown-field",
        ),
        pytest.param(
            "application/yaml",
            b"kind: icp\ndocument:\n  rules: [{name: a, points: 5}]\n  threshold: 10\n",
            422,
            ["/document/threshold"],
            id="semantic",
        ),
    ],
)
async def test_http_import_refuses_what_it_cannot_take(
    client: httpx.AsyncClient, content_type: str, body: bytes, status: int, pointers: list[str]
) -> None:
    answer = await client.post(
        "/v1/icp/versions:import", content=body, headers={**auth("key_m1"), "Content-Type": content_type}
    )
    assert (answer.status_code, answer.headers["content-type"]) == (status, PROBLEM_JSON), answer.text
    assert [error["pointer"] for error in answer.json()["errors"]] == pointers
    assert (await client.get("/v1/icp/versions", headers=auth("key_m1"))).json() == {"versions": []}
