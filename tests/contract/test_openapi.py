"""Every endpoint in every service's OpenAPI document is described and has examples."""

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from intake.config import IntakeSettings
from intake.main import create_app as create_intake
from router.config import RouterSettings
from router.main import create_app as create_router
from scoring.config import ScoringSettings
from scoring.main import create_app as create_scoring
from sla_monitor.config import SlaMonitorSettings
from sla_monitor.main import create_app as create_sla_monitor

# Explicit settings: nothing here reads .env-dependent defaults or touches ./var (no lifespan runs).
MEMORY = "sqlite+aiosqlite:///:memory:"
SERVICES: dict[str, Callable[[], FastAPI]] = {
    "intake": lambda: create_intake(IntakeSettings(database_url=MEMORY), CollectorRegistry()),
    "scoring": lambda: create_scoring(ScoringSettings(database_url=MEMORY), CollectorRegistry()),
    "router": lambda: create_router(RouterSettings(database_url=MEMORY), CollectorRegistry()),
    "sla-monitor": lambda: create_sla_monitor(SlaMonitorSettings(database_url=MEMORY), CollectorRegistry()),
}
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if not isinstance(ref, str):
        return schema
    target: Any = document
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return _resolve(document, target)


def _has_example(document: dict[str, Any], media: dict[str, Any]) -> bool:
    if media.get("example") is not None or media.get("examples"):
        return True
    schema = _resolve(document, media.get("schema", {}))
    return schema.get("example") is not None or bool(schema.get("examples"))


def _gaps(document: dict[str, Any]) -> list[str]:
    gaps = []
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in METHODS:
                continue
            where = f"{method.upper()} {path}"
            if not (operation.get("summary") or operation.get("description")):
                gaps.append(f"{where}: no summary or description")
            body = _resolve(document, operation.get("requestBody", {}))
            for media_type, media in body.get("content", {}).items():
                if not _has_example(document, media):
                    gaps.append(f"{where}: request body {media_type} has no example")
            for status, response in operation.get("responses", {}).items():
                response = _resolve(document, response)
                for media_type, media in response.get("content", {}).items():
                    if not _has_example(document, media):
                        gaps.append(f"{where}: response {status} {media_type} has no example")
    return gaps


@pytest.fixture(params=sorted(SERVICES), name="document")
def openapi_document(request: pytest.FixtureRequest) -> dict[str, Any]:
    document: dict[str, Any] = SERVICES[request.param]().openapi()
    return document


def test_every_endpoint_is_described_and_has_examples(document: dict[str, Any]) -> None:
    assert document["paths"], "the document lists no endpoints"
    gaps = _gaps(document)
    assert not gaps, f"{document['info']['title']}: {len(gaps)} gap(s) in the OpenAPI document:\n  " + "\n  ".join(gaps)


def test_every_service_documents_health_and_readiness(document: dict[str, Any]) -> None:
    readyz = document["paths"]["/readyz"]["get"]["responses"]
    assert {"200", "503"} <= readyz.keys()
    assert readyz["503"]["content"]["application/json"]["example"]["status"] == "not ready"
    assert "/healthz" in document["paths"]
    assert "/metrics" not in document["paths"]


def test_problems_are_documented_as_problem_json_with_real_details() -> None:
    document = SERVICES["intake"]().openapi()
    create = document["paths"]["/v1/leads"]["post"]["responses"]
    read = document["paths"]["/v1/leads/{lead_id}"]["get"]["responses"]
    for responses in (create, read):
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                assert list(response["content"]) == ["application/problem+json"], status
    assert create["401"]["content"]["application/problem+json"]["example"]["detail"] == (
        "A valid API key is required: send `Authorization: Bearer <key>`."
    )
    assert create["400"]["content"]["application/problem+json"]["example"]["type"] == (
        "urn:leadrelay:problem:malformed-json"
    )
    invalid = create["422"]["content"]["application/problem+json"]["example"]
    assert invalid["status"] == 422
    assert invalid["errors"]
    assert all(error.keys() == {"field", "pointer", "message"} for error in invalid["errors"])
    assert "422" not in read, "reading a lead validates nothing, so it never answers 422"
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_the_checker_names_what_is_missing() -> None:
    document = {
        "paths": {
            "/things": {
                "post": {
                    "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/T"}}}},
                    "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {}}}}},
                }
            }
        },
        "components": {"schemas": {"T": {"type": "object"}}},
    }
    assert _gaps(document) == [
        "POST /things: no summary or description",
        "POST /things: request body application/json has no example",
        "POST /things: response 200 application/json has no example",
    ]


API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
PUBLIC_OPERATIONS = {("GET", "/healthz"), ("GET", "/readyz")}


def _documented_scopes() -> dict[tuple[str, str, str], list[str] | None]:
    """(service, method, path) -> scopes, from the table in docs/api.md's "Authentication"."""
    table: dict[tuple[str, str, str], list[str] | None] = {}
    for line in API_DOC.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`") or cells[1] not in {*SERVICES, "every service"}:
            continue
        endpoints, service, scope = cells
        scopes: list[str] | None = [] if scope == "any valid key" else re.findall(r"`([^`]+)`", scope)
        if scope.startswith("the sender's signature"):
            scopes = None  # signed webhooks: no key (the operation is marked x-signature-auth)
        for endpoint in re.findall(r"`([A-Z]+ [^`]+)`", endpoints):
            method, path = endpoint.split(" ", 1)
            for name in SERVICES if service == "every service" else [service]:
                table[(name, method, path)] = scopes
    return table


def test_docs_api_md_states_the_scope_of_every_operation() -> None:
    documented = _documented_scopes()
    stated: dict[tuple[str, str, str], list[str]] = {}
    for name, create in SERVICES.items():
        for path, operations in create().openapi()["paths"].items():
            for method, operation in operations.items():
                if method in METHODS and (method.upper(), path) not in PUBLIC_OPERATIONS:
                    stated[(name, method.upper(), path)] = operation.get("x-required-scopes")
    assert stated == documented
