"""RFC 9457 problem details for every error a client can cause, and a safe 500 for the rest."""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

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


def _field_errors(errors: Any) -> list[FieldError]:
    result = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ()) if part != "body"]
        if error.get("loc", ("",))[0] in {"query", "path", "header"}:
            location = location[1:] if len(location) > 1 else location
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
    from http import HTTPStatus

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


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error answer application/problem+json."""
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    app.add_exception_handler(ProblemException, _problem_handler)
    app.add_exception_handler(Exception, _unexpected_handler)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting problem+json answers."""
    return {status: {"model": Problem, "content": {PROBLEM_JSON: {}}} for status in statuses}
