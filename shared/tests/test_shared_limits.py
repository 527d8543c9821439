"""The edge every service shares: 413 both ways, 401 before the body, 415, 429, strict JSON, bounded values, 409."""

import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Annotated, Any

import asyncpg
import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel, field_validator

from leadrelay.apikeys import ApiKey, Scope, Team, hash_key, require_scopes
from leadrelay.db import DatabaseUnavailable
from leadrelay.limits import MAX_JSON_DEPTH, EdgeLimits, RateLimiter, loads
from leadrelay.problems import (
    CONFLICT_PROBLEM,
    MALFORMED_JSON_PROBLEM,
    PROBLEM_JSON,
    ProblemException,
    ProblemHTTPException,
    install_problem_handlers,
)
from leadrelay.settings import ServiceSettings
from leadrelay.testing import Storage
from leadrelay.validation import MAX_DEPTH, free_form, storable

SECRET = "lr_limits_test_key_0123456789abcdef"
AUTH = {"Authorization": f"Bearer {SECRET}"}
CAP = 64 * 1024

Message = dict[str, Any]
WriteKey = Annotated[ApiKey, Depends(require_scopes(Scope.LEADS_WRITE))]


class Thing(BaseModel):
    """A body the test app takes as JSON."""

    name: str
    attributes: dict[str, Any] = {}

    @field_validator("attributes")
    @classmethod
    def _bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        return free_form(value)


def _app(storage: Storage, **settings: Any) -> FastAPI:
    """An app as services build it: problem handlers, the edge, a runtime whose sessions hold one key."""
    app = FastAPI()
    install_problem_handlers(app)
    app.add_middleware(EdgeLimits, settings=ServiceSettings(max_request_bytes=CAP, **settings))
    app.state.runtime = SimpleNamespace(sessions=storage.sessions)

    @app.post("/v1/things", status_code=202)
    async def create(thing: Thing, _key: WriteKey) -> dict[str, str]:
        return {"name": thing.name}

    @app.get("/v1/things")
    async def listing(_key: WriteKey) -> dict[str, int]:
        return {"count": 0}

    @app.post("/v1/yaml")
    async def yaml_import(request: Request) -> dict[str, int]:
        # A route reading its body itself: it checks its own type, and the cap still holds.
        if request.headers.get("content-type") != "application/yaml":
            raise ProblemException(415, "Unsupported Media Type")
        return {"bytes": len(await request.body())}

    @app.post("/v1/webhooks/{name}")
    async def webhook(name: str, request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    @app.post("/v1/conflict/{driver}")
    async def conflict(driver: str) -> None:
        # What code talking to a driver directly meets: its own error, not SQLAlchemy's.
        if driver == "sqlite":
            error = sqlite3.IntegrityError("UNIQUE constraint failed: lead.email")
            error.sqlite_errorname = "SQLITE_CONSTRAINT_UNIQUE"
            raise error
        raise asyncpg.UniqueViolationError("duplicate key value violates unique constraint")

    return app


@pytest.fixture
async def storage(router_db: Storage) -> Storage:
    """The router schema with one live key holding leads:write."""
    async with router_db.sessions() as session:
        session.add(
            ApiKey(id="key_limits", name="limits", team=Team.OPS, scopes=[Scope.LEADS_WRITE], key_hash=hash_key(SECRET))
        )
        await session.commit()
    return router_db


@pytest.fixture
async def client(storage: Storage) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=_app(storage), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def _call(app: FastAPI, headers: dict[str, str], receive: Callable[[], Awaitable[Message]]) -> list[Message]:
    """Drive the app through ASGI directly, so a test sees exactly what it reads."""
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/things",
        "raw_path": b"/v1/things",
        "root_path": "",
        "query_string": b"",
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers.items()],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
        "state": {},
    }
    await app(scope, receive, send)  # type: ignore[arg-type]
    return sent


def _status_and_problem(sent: list[Message]) -> tuple[int, dict[str, Any]]:
    start = next(message for message in sent if message["type"] == "http.response.start")
    body = b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body")
    assert dict(start["headers"])[b"content-type"] == PROBLEM_JSON.encode()
    return start["status"], json.loads(body)


async def _never(*_: Any) -> Message:
    raise AssertionError("the body was read")


async def test_declared_length_over_the_cap_is_refused_without_reading(storage: Storage) -> None:
    headers = {**AUTH, "Content-Type": "application/json", "Content-Length": str(100 * 1024 * 1024)}
    status, problem = _status_and_problem(await _call(_app(storage), headers, _never))
    assert status == 413
    assert str(CAP) in problem["detail"]


async def test_chunked_body_is_cut_at_the_cap(storage: Storage) -> None:
    chunk = b" " * 8192
    reads = 0

    async def endless() -> Message:  # a chunked body of unbounded length
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    headers = {**AUTH, "Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    status, _ = _status_and_problem(await _call(_app(storage), headers, endless))
    assert status == 413
    assert reads == CAP // len(chunk) + 1  # never more than the cap and the chunk that passed it


async def test_a_route_reading_its_own_body_is_cut_at_the_cap_too(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"k: v\n" * 2000

    answer = await client.post("/v1/yaml", content=chunks(), headers={**AUTH, "Content-Type": "application/yaml"})
    assert (answer.status_code, answer.headers["content-type"]) == (413, PROBLEM_JSON)
    small = await client.post("/v1/yaml", content=b"k: v\n", headers={**AUTH, "Content-Type": "application/yaml"})
    assert small.json() == {"bytes": 5}


@pytest.mark.parametrize("authorization", [None, "Bearer lr_unknown_key_000000000000", "Basic dXNlcjpwYXNz", "Bearer "])
async def test_no_live_key_is_answered_401_before_the_body(storage: Storage, authorization: str | None) -> None:
    headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    if authorization is not None:
        headers["Authorization"] = authorization
    sent = await _call(_app(storage), headers, _never)
    status, problem = _status_and_problem(sent)
    assert status == 401
    assert "Authorization: Bearer" in problem["detail"]
    start = sent[0]
    assert dict(start["headers"])[b"www-authenticate"] == b"Bearer"


async def test_webhooks_and_paths_outside_v1_need_no_key(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/webhooks/hubspot", content=b"{}")).json() == {"bytes": 2}
    assert (await client.get("/openapi.json")).status_code == 200
    assert (await client.get("/v1/nowhere")).status_code == 401  # no hint of which paths exist


async def test_scopes_are_still_the_route_s_to_check(storage: Storage) -> None:
    async with storage.sessions() as session:
        session.add(ApiKey(id="key_reader", name="r", team=Team.OPS, scopes=[], key_hash=hash_key(SECRET + "r")))
        await session.commit()
    transport = httpx.ASGITransport(app=_app(storage), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answer = await client.post("/v1/things", json={"name": "a"}, headers={"Authorization": f"Bearer {SECRET}r"})
    assert answer.status_code == 403


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        pytest.param("application/x-www-form-urlencoded", b"name=a", id="form"),
        pytest.param("text/plain", b'{"name": "a"}', id="text"),
        pytest.param(None, b'{"name": "a"}', id="none"),
        pytest.param("application/jsonx", b'{"name": "a"}', id="look-alike"),
        pytest.param("text/json", b'{"name": "a"}', id="text-json"),
    ],
)
async def test_a_json_endpoint_refuses_other_types_with_415(
    client: httpx.AsyncClient, content_type: str | None, body: bytes
) -> None:
    headers = dict(AUTH) if content_type is None else {**AUTH, "Content-Type": content_type}
    answer = await client.post("/v1/things", content=body, headers=headers)
    assert (answer.status_code, answer.headers["content-type"]) == (415, PROBLEM_JSON), answer.text
    assert "application/json" in answer.json()["detail"]


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "application/merge-patch+json"]
)
async def test_json_types_are_taken(client: httpx.AsyncClient, content_type: str) -> None:
    answer = await client.post("/v1/things", content=b'{"name": "a"}', headers={**AUTH, "Content-Type": content_type})
    assert (answer.status_code, answer.json()) == (202, {"name": "a"})


async def test_a_route_declaring_another_type_keeps_it(client: httpx.AsyncClient) -> None:
    taken = await client.post("/v1/yaml", content=b"a: 1\n", headers={**AUTH, "Content-Type": "application/yaml"})
    assert taken.status_code == 200
    refused = await client.post("/v1/yaml", json={}, headers=AUTH)
    assert refused.status_code == 415


async def test_over_the_rate_a_key_gets_429_with_retry_after(storage: Storage) -> None:
    app = _app(storage, rate_limit_per_key_per_second=0.5, rate_limit_burst=2)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answers = [await client.get("/v1/things", headers=AUTH) for _ in range(3)]
        anonymous = await client.get("/v1/things")
    assert [answer.status_code for answer in answers] == [200, 200, 429]
    limited = answers[2]
    assert limited.headers["content-type"] == PROBLEM_JSON
    assert limited.headers["retry-after"] == "2"  # one token at 0.5 a second
    assert anonymous.status_code == 401  # a key without a token is still a key: no 429 for strangers


async def test_a_rate_of_zero_disables_the_limit(storage: Storage) -> None:
    app = _app(storage, rate_limit_per_key_per_second=0, rate_limit_burst=1)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        statuses = {(await client.get("/v1/things", headers=AUTH)).status_code for _ in range(20)}
    assert statuses == {200}


def test_rate_limiter_refills_per_key_and_says_how_long_to_wait() -> None:
    now = [100.0]
    limiter = RateLimiter(10, 3, clock=lambda: now[0])
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(0.1)
    assert limiter.acquire("b") == 0.0  # each key has its own bucket
    now[0] += 0.25
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, pytest.approx(0.05)]
    now[0] += 60
    assert [limiter.acquire("a") for _ in range(4)][-1] > 0  # refilled to the burst, not beyond


def test_rate_limiter_memory_is_bounded() -> None:
    now = [0.0]
    limiter = RateLimiter(1, 1, clock=lambda: now[0], max_keys=100)
    for index in range(1000):
        now[0] += 0.01
        limiter.acquire(f"source-{index}")
    assert len(limiter._buckets) <= 100


DEEP = b'{"name": "a", "attributes": ' + b'{"a": ' * 40 + b"1" + b"}" * 41


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"name": "a",', id="truncated"),
        pytest.param(b'{"name": "\xff\xfe"}', id="invalid-utf8"),
        pytest.param(b'{"name": "a", "attributes": {"n": NaN}}', id="nan"),
        pytest.param(b'{"name": "a", "attributes": {"n": Infinity}}', id="infinity"),
        pytest.param(b'{"name": "a", "attributes": {"n": [-Infinity]}}', id="minus-infinity"),
        pytest.param(b'{"name": "a", "attributes": {"n": 1e400}}', id="1e400"),
        pytest.param(b'{"name": "a", "attributes": {"n": ' + b"9" * 5000 + b"}}", id="5000-digits"),
        pytest.param(DEEP, id="deep"),
        pytest.param(b"[" * 30_000 + b"]" * 30_000, id="past-the-recursion-limit"),
        pytest.param(b'\xef\xbb\xbf{"name": "a"}', id="byte-order-mark"),
        pytest.param('{"name": "a"}'.encode("utf-16"), id="utf-16"),
    ],
)
async def test_malformed_json_is_400_malformed_json(client: httpx.AsyncClient, body: bytes) -> None:
    answer = await client.post("/v1/things", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert (answer.status_code, answer.headers["content-type"]) == (400, PROBLEM_JSON), answer.text
    problem = answer.json()
    assert problem["type"] == MALFORMED_JSON_PROBLEM
    assert problem["errors"][0]["field"] == "body"


def test_strict_loads_says_what_is_wrong() -> None:
    for body, words in [
        (b'{"n": NaN}', "NaN is not a JSON number"),
        (b'{"n": 1e400}', "out of range"),
        (b"9" * 5000, "too many digits"),
        (b"\xff", "not UTF-8"),
        (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), f"more than {MAX_JSON_DEPTH} levels"),
    ]:
        with pytest.raises(ProblemHTTPException) as refused:
            loads(body)
        assert words in refused.value.problem.errors[0].message, body[:20]
    assert loads(b'{"n": 1.5e300, "m": [1, -2, "\\u00df"]}') == {"n": 1.5e300, "m": [1, -2, "ß"]}
    assert loads(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH) is not None


def _nested(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = {"a": value}
    return value


async def test_free_form_values_are_bounded_and_named(client: httpx.AsyncClient) -> None:
    cases = {
        "deep": _nested(MAX_DEPTH + 1),
        "long-text": {"note": "x" * 16_385},
        "big-integer": {"n": 2**64},
        "nul": {"k": "a\x00b"},
        "surrogate": {"k": "\ud800"},
        "large": {f"k{index}": "v" * 1000 for index in range(20)},
    }
    for name, attributes in cases.items():
        body = json.dumps({"name": "a", "attributes": attributes})
        answer = await client.post("/v1/things", content=body, headers={**AUTH, "Content-Type": "application/json"})
        assert answer.status_code == 422, (name, answer.text)
        assert [error["field"] for error in answer.json()["errors"]] == ["attributes"], name
    fine = await client.post("/v1/things", json={"name": "a", "attributes": _nested(MAX_DEPTH)}, headers=AUTH)
    assert fine.status_code == 202, fine.text


def test_storable_refuses_what_a_consumer_could_not_read() -> None:
    assert storable(_nested(MAX_DEPTH)) == _nested(MAX_DEPTH)
    assert storable([[], {}, 1.5, -(2**63), 2**63 - 1, True, None]) is not None
    for bad, words in [
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        ([[float("-inf")]], "finite"),
        (2**63, "64 bits"),
        ({"k" * 201: 1}, "keys must be at most 200"),
        (_nested(MAX_DEPTH + 1), f"at most {MAX_DEPTH} levels"),
    ]:
        with pytest.raises(ValueError, match=words):
            storable(bad)
    with pytest.raises(ValueError, match="at most 1 levels"):
        storable([[]] * 2, max_depth=1)


async def test_a_unique_key_conflict_from_the_driver_is_409(client: httpx.AsyncClient) -> None:
    for driver in ("sqlite", "asyncpg"):
        answer = await client.post(f"/v1/conflict/{driver}", headers=AUTH)
        assert (answer.status_code, answer.headers["content-type"]) == (409, PROBLEM_JSON), driver
        assert answer.json()["type"] == CONFLICT_PROBLEM
    assert [error["field"] for error in answer.json()["errors"]] == []
    sqlite_answer = await client.post("/v1/conflict/sqlite", headers=AUTH)
    assert [error["field"] for error in sqlite_answer.json()["errors"]] == ["email"]


def test_the_openapi_document_states_what_the_edge_answers(storage: Storage) -> None:
    paths = _app(storage).openapi()["paths"]
    json_body = paths["/v1/things"]["post"]["responses"]
    assert {"413", "415", "429"} <= set(json_body)
    assert json_body["429"]["headers"]["Retry-After"]["schema"] == {"type": "integer"}
    assert json_body["415"]["content"][PROBLEM_JSON]["example"]["status"] == 415
    assert {"413", "415"}.isdisjoint(paths["/v1/things"]["get"]["responses"])
    assert "429" not in paths["/v1/webhooks/{name}"]["post"]["responses"]  # signed, not keyed


async def test_a_database_down_while_checking_the_key_is_503_not_500(storage: Storage) -> None:
    app = _app(storage)

    def unavailable() -> Any:
        raise DatabaseUnavailable("database unavailable: ConnectionRefusedError")

    app.state.runtime = SimpleNamespace(sessions=unavailable)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answer = await client.post("/v1/things", json={"name": "a"}, headers={"Authorization": "Bearer lr_other_key"})
    assert (answer.status_code, answer.headers["content-type"]) == (503, PROBLEM_JSON)
    assert answer.headers["retry-after"] == "5"


@pytest.mark.parametrize(
    ("body", "words"),
    [(b'{"name": "\xff"}', "not UTF-8"), (b'{"name": ' + b"9" * 5000 + b"}", "too many digits")],
)
async def test_without_the_edge_fastapi_s_parse_failures_are_malformed_json_too(body: bytes, words: str) -> None:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/things")
    async def create(thing: Thing) -> dict[str, str]:
        return {"name": thing.name}

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answer = await client.post("/things", content=body, headers={"Content-Type": "application/json"})
    assert (answer.status_code, answer.json()["type"]) == (400, MALFORMED_JSON_PROBLEM)
    assert words in answer.json()["errors"][0]["message"]
