"""OpenAPI documentation of problem+json answers: `problem_responses` for routes, and the document's corrections."""

from collections.abc import Callable, Iterator, Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI

from leadrelay.problems import MALFORMED_JSON_PROBLEM, PROBLEM_JSON, VALIDATION_PROBLEM, Problem

# What the handlers in leadrelay.problems really answer; `problem_responses` shows these as examples.
_EXAMPLE_FIELD_ERRORS = [
    {
        "field": "email",
        "pointer": "/email",
        "message": "value is not a valid email address: An email address must have an @-sign.",
    },
    {"field": "country", "pointer": "/country", "message": "String should have at most 2 characters"},
    {"field": "colour", "pointer": "/colour", "message": "Extra inputs are not permitted"},
]
_EXAMPLES: dict[int, dict[str, Any]] = {
    400: {
        "type": MALFORMED_JSON_PROBLEM,
        "title": "Malformed JSON",
        "detail": "The request body is not valid JSON.",
        "errors": [{"field": "body", "pointer": "/", "message": "Expecting property name enclosed in double quotes"}],
    },
    401: {"detail": "A valid API key is required: send `Authorization: Bearer <key>`."},
    403: {"detail": "The API key lacks the scope(s): leads:write."},
    404: {},
    422: {
        "type": VALIDATION_PROBLEM,
        "title": "Invalid request",
        "detail": "; ".join(f"{error['field']}: {error['message']}" for error in _EXAMPLE_FIELD_ERRORS),
        "errors": _EXAMPLE_FIELD_ERRORS,
    },
    413: {"detail": "The request body is larger than 1048576 bytes."},
    415: {"detail": "This endpoint takes application/json; the request has Content-Type text/plain."},
    429: {
        "detail": (
            "This API key sent more than 500 requests a second (bursts up to 1000); retry after Retry-After seconds."
        )
    },
    503: {"detail": "The database is unavailable; retry shortly."},
}

_DESCRIPTIONS = {
    400: "The body is not valid JSON",
    401: "No valid API key (missing, unknown, revoked, or not a Bearer token)",
    403: "The API key lacks a required scope",
    404: "Not found",
    413: "The body is larger than `MAX_REQUEST_BYTES`; nothing past the limit was read",
    415: "The body's Content-Type is not one this endpoint takes",
    422: "Invalid request: one entry in `errors` per failing field",
    429: "The key sent more than its rate; retry after `Retry-After` seconds",
    503: "The database is unavailable; nothing was stored, retry after `Retry-After` seconds",
}

_SCHEMAS = "#/components/schemas/"


def problem_example(status: int, *, instance: str | None = None, detail: str | None = None) -> dict[str, Any]:
    """A realistic problem+json body for a status, as the handlers produce it."""
    example: dict[str, Any] = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status}
    example.update(_EXAMPLES.get(status, {}))
    if detail is not None:
        example["detail"] = detail
    if instance is not None:
        example["instance"] = instance
    example.setdefault("errors", [])
    return {key: example[key] for key in ("type", "title", "status", "detail", "instance", "errors") if key in example}


def problem_responses(
    *statuses: int, instance: str | None = None, details: Mapping[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting problem+json answers, each with an example.

    `instance` is the example's request path; `details` replaces the generic detail of a status
    with what this endpoint really says (e.g. which scope a 403 names).
    """
    details = details or {}
    return {
        status: {
            "model": Problem,
            "description": _DESCRIPTIONS.get(status, HTTPStatus(status).phrase),
            "content": {
                PROBLEM_JSON: {"example": problem_example(status, instance=instance, detail=details.get(status))}
            },
        }
        for status in statuses
    }


def install_problem_openapi(app: FastAPI) -> None:
    """Make the app's OpenAPI document describe the problem+json answers the handlers really send."""
    app.openapi = _problem_openapi(app.openapi)  # type: ignore[method-assign]


def _problem_openapi(build: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    # FastAPI documents a problem model as application/json, and adds its own 422 shape to every
    # operation with parameters; neither is what the handlers send. Correct both.
    def openapi() -> dict[str, Any]:
        document = build()
        paths: dict[str, Any] = document.get("paths", {})
        for path, operations in paths.items():
            for operation in operations.values():
                _document_problems(operation, instance=path)
                _document_edge(operation, path=path)
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        referenced = set(_references(paths))
        if _SCHEMAS + "HTTPValidationError" not in referenced:
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
        if _SCHEMAS + "Problem" in referenced and "Problem" not in schemas:
            problem_schema = Problem.model_json_schema(ref_template=_SCHEMAS + "{model}")
            schemas.update(problem_schema.pop("$defs", {}), Problem=problem_schema)
        return document

    return openapi


def _references(node: Any) -> Iterator[str]:
    """Every `$ref` target anywhere below a node of the document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def _document_problems(operation: dict[str, Any], *, instance: str) -> None:
    responses: dict[str, Any] = operation.get("responses", {})
    for response in responses.values():
        content = response.get("content", {})
        if PROBLEM_JSON in content and "application/json" in content:
            content[PROBLEM_JSON].setdefault("schema", content.pop("application/json").get("schema", {}))
    default_422 = responses.get("422", {}).get("content", {}).get("application/json", {}).get("schema", {})
    if default_422.get("$ref") != _SCHEMAS + "HTTPValidationError":
        return
    if "requestBody" not in operation and all(_cannot_fail(param) for param in operation.get("parameters", [])):
        del responses["422"]  # nothing in this request is validated: there is no 422 to document
        return
    responses["422"] = {
        "description": _DESCRIPTIONS[422],
        "content": {
            PROBLEM_JSON: {
                "schema": {"$ref": _SCHEMAS + "Problem"},
                "example": problem_example(422, instance=instance),
            }
        },
    }


def _document_edge(operation: dict[str, Any], *, path: str) -> None:
    # What leadrelay.limits answers in front of every route, unless the route documents it itself.
    responses: dict[str, Any] = operation.setdefault("responses", {})
    statuses = []
    if path.startswith("/v1/") and not path.startswith("/v1/webhooks/"):
        statuses.append(429)
    body = operation.get("requestBody", {}).get("content", {})
    if body:
        statuses.append(413)
        if "application/json" in body:
            statuses.append(415)
    for status in statuses:
        entry = responses.setdefault(
            str(status),
            {
                "description": _DESCRIPTIONS[status],
                "content": {
                    PROBLEM_JSON: {
                        "schema": {"$ref": _SCHEMAS + "Problem"},
                        "example": problem_example(status, instance=path),
                    }
                },
            },
        )
        if status == 429:
            entry.setdefault("headers", {})["Retry-After"] = {
                "description": "Seconds until the key may send again.",
                "schema": {"type": "integer"},
            }


def _cannot_fail(parameter: dict[str, Any]) -> bool:
    # A path parameter declared as a plain string takes whatever the path segment holds.
    schema = parameter.get("schema", {})
    plain_string = schema.get("type") == "string" and schema.keys() <= {"type", "title", "description", "examples"}
    return parameter.get("in") == "path" and plain_string
