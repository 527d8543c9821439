"""RFC 9457 problem+json answers from a tiny app with the shared handlers installed."""

import sqlite3
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, Field
from sqlalchemy.exc import OperationalError

from leadrelay.db import DatabaseUnavailable
from leadrelay.problems import (
    MALFORMED_JSON_PROBLEM,
    PROBLEM_JSON,
    VALIDATION_PROBLEM,
    ProblemException,
    install_problem_handlers,
)

SECRET = "postgresql://admin:hunter2@db.internal/leads"


class Address(BaseModel):
    city: str
    country: str = Field(min_length=2, max_length=2)


class Signup(BaseModel):
    email: str
    seats: int = Field(ge=1)
    address: Address


def make_app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/signups", status_code=201)
    async def create(body: Signup) -> dict[str, str]:
        return {"email": body.email}

    @app.get("/signups")
    async def search(limit: int = 10) -> dict[str, int]:
        return {"limit": limit}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError(f"cannot connect to {SECRET}")

    @app.get("/database-down")
    async def database_down() -> None:
        raise DatabaseUnavailable(f"cannot connect to {SECRET}")

    @app.get("/bad-statement")
    async def bad_statement() -> None:
        raise OperationalError("SELECT nope", {}, sqlite3.OperationalError(f"no such column: nope ({SECRET})"))

    @app.get("/no-file")
    async def no_file() -> None:
        raise FileNotFoundError(f"/etc/{SECRET}")

    @app.get("/teapot")
    async def teapot() -> None:
        raise ProblemException(409, "Conflict", "Already there.", type_="urn:test:conflict", headers={"X-Why": "dup"})

    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    # raise_app_exceptions=False: Starlette answers the 500 and then re-raises for the server to log.
    transport = httpx.ASGITransport(app=make_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


VALID = {"email": "ada@example.com", "seats": 3, "address": {"city": "London", "country": "GB"}}


async def test_valid_body_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.post("/signups", json=VALID)
    assert response.status_code == 201
    assert response.json() == {"email": "ada@example.com"}


@pytest.mark.parametrize("body", [b'{"email": "ada@example.com",', b"{'email': 1}", b"nope"])
async def test_malformed_json_is_a_400_problem(client: httpx.AsyncClient, body: bytes) -> None:
    response = await client.post("/signups", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM_JSON
    problem = response.json()
    assert problem["type"] == MALFORMED_JSON_PROBLEM
    assert problem["status"] == 400
    assert problem["title"] == "Malformed JSON"
    assert problem["instance"] == "/signups"


async def test_missing_field_is_a_422_naming_it(client: httpx.AsyncClient) -> None:
    response = await client.post("/signups", json={key: value for key, value in VALID.items() if key != "seats"})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    problem = response.json()
    assert problem["type"] == VALIDATION_PROBLEM
    assert problem["status"] == 422
    assert [(error["field"], error["pointer"]) for error in problem["errors"]] == [("seats", "/seats")]
    assert "seats" in problem["detail"]


async def test_every_failing_field_is_named_with_its_path(client: httpx.AsyncClient) -> None:
    body = {"email": "ada@example.com", "seats": 0, "address": {"country": "GBR"}}
    response = await client.post("/signups", json=body)
    assert response.status_code == 422
    errors = {error["field"]: error for error in response.json()["errors"]}
    assert set(errors) == {"seats", "address.city", "address.country"}
    assert errors["address.city"]["pointer"] == "/address/city"
    assert all(error["message"] for error in errors.values())


async def test_bad_query_parameter_is_named_without_its_location(client: httpx.AsyncClient) -> None:
    response = await client.get("/signups", params={"limit": "many"})
    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == ["limit"]


async def test_unexpected_exception_is_a_500_problem_without_internals(client: httpx.AsyncClient) -> None:
    response = await client.get("/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json() == {
        "type": "about:blank",
        "title": "Internal Server Error",
        "status": 500,
        "instance": "/boom",
        "errors": [],
    }
    for leak in ("hunter2", "RuntimeError", "Traceback", "db.internal"):
        assert leak not in response.text


async def test_unavailable_database_is_a_503_problem_with_retry_after(client: httpx.AsyncClient) -> None:
    response = await client.get("/database-down")
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["retry-after"] == "5"
    assert response.json()["title"] == "Service Unavailable"
    for leak in ("hunter2", "DatabaseUnavailable", "db.internal"):
        assert leak not in response.text


@pytest.mark.parametrize("path", ["/bad-statement", "/no-file"])
async def test_server_bugs_are_500_not_503(client: httpx.AsyncClient, path: str) -> None:
    # Neither a broken statement nor a local OSError is a database outage: retrying cannot help.
    response = await client.get(path)
    assert response.status_code == 500
    assert "retry-after" not in response.headers
    assert "hunter2" not in response.text


async def test_unknown_route_is_a_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/nowhere")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["title"] == "Not Found"


async def test_wrong_method_is_a_405_problem_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.delete("/signups")
    assert response.status_code == 405
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["allow"]  # the exception's headers are passed on


async def test_problem_exception_keeps_its_status_type_and_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/teapot")
    assert response.status_code == 409
    assert response.headers["x-why"] == "dup"
    problem = response.json()
    assert (problem["type"], problem["title"], problem["detail"]) == ("urn:test:conflict", "Conflict", "Already there.")


class Note(BaseModel):
    body: str


class Activity(BaseModel):
    note: Note


async def test_a_field_named_body_is_named_correctly() -> None:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/activities")
    async def create(activity: Activity) -> dict[str, str]:
        return {"body": activity.note.body}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        response = await client.post("/activities", json={"note": {}})
    assert response.status_code == 422
    assert [(e["field"], e["pointer"]) for e in response.json()["errors"]] == [("note.body", "/note/body")]
