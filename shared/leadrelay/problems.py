"""RFC 9457 problem details for every error a client can cause, and a safe 500 for the rest.

How the OpenAPI document shows these answers lives in leadrelay.openapi.
"""

import logging
import sqlite3
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from leadrelay.db import DatabaseUnavailable, Refusal, is_unavailable, refusal

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
VALIDATION_PROBLEM = "urn:leadrelay:problem:validation-error"
MALFORMED_JSON_PROBLEM = "urn:leadrelay:problem:malformed-json"
CONFLICT_PROBLEM = "urn:leadrelay:problem:conflict"


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


class ProblemHTTPException(StarletteHTTPException):
    """A problem raised where only an HTTPException gets through (from `receive`, in FastAPI's body reading)."""

    def __init__(self, problem: Problem, headers: dict[str, str] | None = None) -> None:
        super().__init__(problem.status, problem.detail, headers)
        self.problem = problem


def malformed_json(message: str) -> Problem:
    """The answer to a body that is not JSON LeadRelay takes (RFC 8259, finite numbers)."""
    return Problem(
        type=MALFORMED_JSON_PROBLEM,
        title="Malformed JSON",
        status=400,
        detail="The request body is not valid JSON.",
        errors=[FieldError(field="body", pointer="/", message=message)],
    )


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


def refused_field(refused: Refusal, *, at: Sequence[str] = ()) -> FieldError:
    """The field a database refusal names (`body` when it names none), under `at` for a batch item."""
    location = [*at, refused.column or "body"]
    message = "already taken" if refused.conflict else "cannot be stored"
    return FieldError(field=".".join(location), pointer="/" + "/".join(location), message=message)


def item_field_errors(error: ValidationError, *, at: Sequence[str]) -> list[FieldError]:
    """A batch item's validation errors, each named under the item's place (`at`: e.g. ("leads", "3"))."""
    errors = []
    for detail in error.errors():
        location = [*at, *(str(part) for part in detail["loc"])]
        errors.append(FieldError(field=".".join(location), pointer="/" + "/".join(location), message=detail["msg"]))
    return errors


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
        message = str(errors[0].get("ctx", {}).get("error", "invalid JSON"))
        return problem_response(malformed_json(message), request)
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
    if isinstance(exc, ProblemHTTPException):
        return problem_response(exc.problem.model_copy(), request, dict(exc.headers or {}))
    if exc.detail == _FASTAPI_PARSE_FAILURE and isinstance(exc.__cause__, ValueError | RecursionError):
        # FastAPI's answer to a JSON body json.loads could not take (not UTF-8, a number of
        # thousands of digits, nesting past the interpreter's limit): malformed JSON all the same.
        return problem_response(malformed_json(_parse_failure(exc.__cause__)), request)
    title = HTTPStatus(exc.status_code).phrase
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
    return problem_response(
        Problem(title=title, status=exc.status_code, detail=detail), request, dict(exc.headers or {})
    )


_FASTAPI_PARSE_FAILURE = "There was an error parsing the body"


def _parse_failure(error: BaseException) -> str:
    if isinstance(error, UnicodeDecodeError):
        return "the body is not UTF-8 text"
    if isinstance(error, RecursionError):
        return "the body is nested too deeply"
    return "a number in the body has too many digits"


async def _problem_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemException)
    return problem_response(exc.problem.model_copy(), request, exc.headers)


async def _unexpected_handler(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error", extra={"path": request.url.path})
    return problem_response(Problem(title="Internal Server Error", status=500), request)


async def _unavailable_handler(request: Request, exc: Exception) -> JSONResponse:
    return database_unavailable(request, exc)


def database_unavailable(request: Request, exc: BaseException) -> JSONResponse:
    """The 503 for a database that is down or overloaded (also answered outside the exception handlers)."""
    # The client did nothing wrong and may retry; nothing was committed, so a retry cannot
    # duplicate anything.
    logger.warning("database unavailable", extra={"path": request.url.path, "error": type(exc).__name__})
    problem = Problem(title="Service Unavailable", status=503, detail="The database is unavailable; retry shortly.")
    return problem_response(problem, request, {"Retry-After": str(RETRY_AFTER_SECONDS)})


async def _database_error_handler(request: Request, exc: Exception) -> JSONResponse:
    if is_unavailable(exc):
        return await _unavailable_handler(request, exc)
    refused = refusal(exc)
    if refused is None:
        return await _unexpected_handler(request, exc)
    # A value the request carried that the database will never take: retrying cannot help. The
    # driver's message may quote the value, so the answer names at most the column.
    logger.info(
        "database refused a value",
        extra={"path": request.url.path, "error": type(exc).__name__, "column": refused.column},
    )
    errors = [refused_field(refused)] if refused.column is not None else []
    if refused.conflict:
        problem = Problem(
            type=CONFLICT_PROBLEM,
            title="Conflict",
            status=409,
            detail="A value in the request is already taken.",
            errors=errors,
        )
    else:
        problem = Problem(
            type=VALIDATION_PROBLEM,
            title="Invalid request",
            status=422,
            detail="The database refused a value in the request.",
            errors=errors,
        )
    return problem_response(problem, request)


async def _driver_integrity_handler(request: Request, exc: Exception) -> JSONResponse:
    # A driver's own integrity error that reached the route without SQLAlchemy's wrapping (code
    # talking to the driver directly): the same refusal as through SQLAlchemy, never a 500.
    return await _database_error_handler(request, IntegrityError(None, None, exc))


RETRY_AFTER_SECONDS = 5


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error answer application/problem+json, and the OpenAPI document say so."""
    app.add_exception_handler(RequestValidationError, _validation_handler)
    for unavailable in (DatabaseUnavailable, SQLAlchemyTimeoutError):
        app.add_exception_handler(unavailable, _unavailable_handler)
    app.add_exception_handler(DBAPIError, _database_error_handler)
    for driver_integrity in (sqlite3.IntegrityError, asyncpg.IntegrityConstraintViolationError):
        app.add_exception_handler(driver_integrity, _driver_integrity_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    app.add_exception_handler(ProblemException, _problem_handler)
    app.add_exception_handler(Exception, _unexpected_handler)
    # Imported here because leadrelay.openapi documents this module's models, so it imports them.
    from leadrelay.openapi import install_problem_openapi

    install_problem_openapi(app)
