"""The OpenAPI document describes problem+json answers as the handlers send them."""

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from leadrelay.openapi import problem_example, problem_responses
from leadrelay.problems import PROBLEM_JSON, VALIDATION_PROBLEM, install_problem_handlers


class Signup(BaseModel):
    email: str


def make_document() -> dict[str, Any]:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/signups", responses=problem_responses(401, 422, instance="/signups"))
    async def create(body: Signup) -> dict[str, str]:
        """Mentions HTTPValidationError in prose, which is no reference to the schema."""
        return {"email": body.email}

    @app.get("/signups/{name}")
    async def read(name: str) -> dict[str, str]:
        return {"name": name}

    @app.get("/search")
    async def search(limit: int = 10) -> dict[str, int]:
        return {"limit": limit}

    document: dict[str, Any] = app.openapi()
    return document


def test_problem_answers_are_problem_json_only() -> None:
    responses = make_document()["paths"]["/signups"]["post"]["responses"]
    for status in ("401", "422"):
        assert list(responses[status]["content"]) == [PROBLEM_JSON], status
        assert responses[status]["content"][PROBLEM_JSON]["schema"] == {"$ref": "#/components/schemas/Problem"}
    assert responses["422"]["content"][PROBLEM_JSON]["example"]["type"] == VALIDATION_PROBLEM


def test_fastapi_422_is_replaced_or_dropped_and_its_schemas_go() -> None:
    document = make_document()
    searched = document["paths"]["/search"]["get"]["responses"]["422"]["content"]
    assert list(searched) == [PROBLEM_JSON]
    assert searched[PROBLEM_JSON]["example"]["instance"] == "/search"
    # A plain string path parameter validates nothing: there is no 422 to document.
    assert "422" not in document["paths"]["/signups/{name}"]["get"]["responses"]
    # The schema is named in a description, but nothing refers to it any more.
    assert "HTTPValidationError" in document["paths"]["/signups"]["post"]["description"]
    assert {"HTTPValidationError", "ValidationError"}.isdisjoint(document["components"]["schemas"])
    assert {"Problem", "FieldError"} <= document["components"]["schemas"].keys()


def test_example_takes_the_endpoint_detail() -> None:
    example = problem_example(404, instance="/things/1", detail="No thing with id 1.")
    assert example == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "No thing with id 1.",
        "instance": "/things/1",
        "errors": [],
    }
