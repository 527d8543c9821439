"""RFC 9457 problem details for every error a client can cause, and a safe 500 for the rest."""

import json
import logging
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from leadrelay.db import is_unavailable

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
VALIDATION_PROBLEM = "urn:leadrelay:problem:validation-error"
MALFORMED_JSON_PROBLEM = "urn:leadrelay:problem:malformed-json"


class FieldError(BaseModel):
    """One failing field: a dotted path, a JSON pointer into the body, and what is wrong."""

    field: str
    pointer: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] = Field(default_factory=list)


class ProblemException(Exception):
    """Raise from a route to answer with a specific problem."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        type_: str = "about:blank",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.problem = Problem(type=type_, title=title, status=status, detail=detail)
        self.headers = headers


def problem_response(problem: Problem, request: Request, headers: dict[str, str] | None = None) -> JSONResponse:
    """Serialize a problem for this request."""
    problem.instance = request.url.path
    return JSONResponse(
        problem.model_dump(exclude_none=True, exclude_defaults=False),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


_SOURCES = {"body", "query", "path", "header", "cookie"}


def _field_errors(errors: Any) -> list[FieldError]:
    result = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ())]
        # FastAPI prefixes where the value came from; a body error may name the body as a whole.
        if location and location[0] in _SOURCES and (location[0] == "body" or len(location) > 1):
            location = location[1:]
        field = ".".join(location) or "body"
        result.append(FieldError(field=field, pointer="/" + "/".join(location), message=error.get("msg", "invalid")))
    return result


async def _validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(error.get("type") == "json_invalid" for error in errors):
        problem = Problem(
            type=MALFORMED_JSON_PROBLEM,
            title="Malformed JSON",
            status=400,
            detail="The request body is not valid JSON.",
            errors=[
                FieldError(
                    field="body", pointer="/", message=str(errors[0].get("ctx", {}).get("error", "invalid JSON"))
                )
            ],
        )
        return problem_response(problem, request)
    field_errors = _field_errors(errors)
    problem = Problem(
        type=VALIDATION_PROBLEM,
        title="Invalid request",
        status=422,
        detail="; ".join(f"{error.field}: {error.message}" for error in field_errors),
        errors=field_errors,
    )
    return problem_response(problem, request)


async def _http_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    title = HTTPStatus(exc.status_code).phrase
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
    return problem_response(
        Problem(title=title, status=exc.status_code, detail=detail), request, dict(exc.headers or {})
    )


async def _problem_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemException)
    return problem_response(exc.problem.model_copy(), request, exc.headers)


async def _unexpected_handler(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error", extra={"path": request.url.path})
    return problem_response(Problem(title="Internal Server Error", status=500), request)


async def _unavailable_handler(request: Request, exc: Exception) -> JSONResponse:
    if not is_unavailable(exc):
        return await _unexpected_handler(request, exc)
    # The database is down or overloaded: the client did nothing wrong and may retry; nothing was
    # committed, so a retry cannot duplicate anything.
    logger.warning("dependency unavailable", extra={"path": request.url.path, "error": type(exc).__name__})
    problem = Problem(title="Service Unavailable", status=503, detail="A dependency is unavailable; retry shortly.")
    return problem_response(problem, request, {"Retry-After": str(RETRY_AFTER_SECONDS)})


RETRY_AFTER_SECONDS = 5


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error answer application/problem+json, and the OpenAPI document say so."""
    app.add_exception_handler(RequestValidationError, _validation_handler)
    for error in (DBAPIError, SQLAlchemyTimeoutError, OSError):
        app.add_exception_handler(error, _unavailable_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    app.add_exception_handler(ProblemException, _problem_handler)
    app.add_exception_handler(Exception, _unexpected_handler)
    app.openapi = _problem_openapi(app.openapi)  # type: ignore[method-assign]


# What the handlers above really answer; `problem_responses` shows these as OpenAPI examples.
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
    503: {"detail": "A dependency is unavailable; retry shortly."},
}

_DESCRIPTIONS = {
    400: "The body is not valid JSON",
    401: "No valid API key (missing, unknown, revoked, or not a Bearer token)",
    403: "The API key lacks a required scope",
    404: "Not found",
    422: "Invalid request: one entry in `errors` per failing field",
    503: "The database is unavailable; nothing was stored, retry after `Retry-After` seconds",
}


def problem_example(status: int, *, instance: str | None = None, detail: str | None = None) -> dict[str, Any]:
    """A realistic problem+json body for a status, as the handlers above produce it."""
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


def _problem_openapi(build: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    # FastAPI documents a problem model as application/json, and adds its own 422 shape to every
    # operation with parameters; neither is what the handlers above send. Correct both.
    def openapi() -> dict[str, Any]:
        schema = build()
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                _document_problems(operation, instance=path)
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        if "HTTPValidationError" not in json.dumps(schema.get("paths", {})):
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
        if "#/components/schemas/Problem" in json.dumps(schema.get("paths", {})) and "Problem" not in schemas:
            problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(problem_schema.pop("$defs", {}), Problem=problem_schema)
        return schema

    return openapi


def _document_problems(operation: dict[str, Any], *, instance: str) -> None:
    responses: dict[str, Any] = operation.get("responses", {})
    for response in responses.values():
        content = response.get("content", {})
        if PROBLEM_JSON in content and "application/json" in content:
            content[PROBLEM_JSON].setdefault("schema", content.pop("application/json").get("schema", {}))
    default_422 = responses.get("422", {}).get("content", {}).get("application/json", {}).get("schema", {})
    if not default_422.get("$ref", "").endswith("/HTTPValidationError"):
        return
    if "requestBody" not in operation and all(_cannot_fail(param) for param in operation.get("parameters", [])):
        del responses["422"]  # nothing in this request is validated: there is no 422 to document
        return
    responses["422"] = {
        "description": _DESCRIPTIONS[422],
        "content": {
            PROBLEM_JSON: {
                "schema": {"$ref": "#/components/schemas/Problem"},
                "example": problem_example(422, instance=instance),
            }
        },
    }


def _cannot_fail(parameter: dict[str, Any]) -> bool:
    # A path parameter declared as a plain string takes whatever the path segment holds.
    schema = parameter.get("schema", {})
    plain_string = schema.get("type") == "string" and schema.keys() <= {"type", "title", "description", "examples"}
    return parameter.get("in") == "path" and plain_string
