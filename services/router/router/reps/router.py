"""HTTP endpoints of reps (`reps:write` to change, `routing:read` to read); no answer holds a secret."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from leadrelay import idempotency_keys
from leadrelay.apikeys import ApiKey, Scope, require_scopes
from leadrelay.db import SessionDep
from leadrelay.idempotency_keys import IdempotencyKeyHeader
from leadrelay.openapi import problem_responses
from leadrelay.problems import ProblemException
from router.reps import service
from router.reps.crypto import SecretBoxDep
from router.reps.models import REP_ID_PATTERN, Rep
from router.reps.schemas import (
    EXAMPLE_REP_ID,
    REP_PUBLIC_EXAMPLE,
    AvailabilityPut,
    RepBatch,
    RepBatchResults,
    RepList,
    RepPublic,
    RepPut,
)

router = APIRouter(prefix="/v1/reps", tags=["reps"])

WriteKey = Annotated[ApiKey, Depends(require_scopes(Scope.REPS_WRITE))]
ReadKey = Annotated[ApiKey, Depends(require_scopes(Scope.ROUTING_READ))]
RepId = Annotated[
    str,
    Path(
        pattern=REP_ID_PATTERN,
        description="The rep's id: up to 100 letters, digits and `._:@-`.",
        examples=[EXAMPLE_REP_ID],
    ),
]
_INSTANCE = f"/v1/reps/{EXAMPLE_REP_ID}"
_404 = {404: f"No rep with id {EXAMPLE_REP_ID}."}
_WRITE = {403: "The API key lacks the scope(s): reps:write.", **_404}
_READ = {403: "The API key lacks the scope(s): routing:read.", **_404}


@router.put(
    "/{rep_id}",
    response_model=RepPublic,
    summary="Create or replace a rep",
    responses={
        201: {
            "description": "The rep was new: stored",
            "content": {"application/json": {"example": REP_PUBLIC_EXAMPLE}},
            "model": RepPublic,
        },
        **problem_responses(400, 401, 403, 422, 503, instance=_INSTANCE, details=_WRITE),
    },
)
async def put_rep(
    rep_id: RepId, rep_in: RepPut, session: SessionDep, box: SecretBoxDep, actor: WriteKey, response: Response
) -> RepPublic:
    """Store the rep's whole state: 201 if new, else 200; in effect for the next assignment.

    Secrets (webhook secrets, Slack URLs) are encrypted at rest and never shown again (last 4 characters only).
    """
    try:
        stored = await service.put(session=session, rep_id=rep_id, rep_in=rep_in, box=box, actor=actor)
    except service.UnknownTeams as unknown:
        raise RequestValidationError(
            [
                {"loc": ("body", *error.field.split(".")), "msg": error.message, "type": "value_error"}
                for error in unknown.errors
            ]
        ) from None
    if stored.created:
        response.status_code = status.HTTP_201_CREATED
        response.headers["Location"] = f"/v1/reps/{rep_id}"
    return service.public(stored.rep)


@router.post(
    ":batch",
    response_model=RepBatchResults,
    summary="Create or replace up to 1,000 reps",
    responses={
        **idempotency_keys.replayable(200, "One result per item, in order"),
        **problem_responses(400, 401, 403, 422, 503, instance="/v1/reps:batch", details=_WRITE),
    },
)
async def put_reps(
    batch: RepBatch,
    request: Request,
    session: SessionDep,
    box: SecretBoxDep,
    actor: WriteKey,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Store each rep as `PUT` would (a CRM's user list), in one transaction; a bad item fails alone.

    With an `Idempotency-Key`, a retry within 24 hours answers the first answer and changes nothing.
    """
    idempotency = idempotency_keys.request_for(request, owner=actor.id, key=idempotency_key, payload=batch.reps)
    answer = await service.put_batch(session=session, items=batch.reps, box=box, actor=actor, idempotency=idempotency)
    return idempotency_keys.response(answer)


@router.put(
    "/{rep_id}/availability",
    response_model=RepPublic,
    summary="Set a rep's availability toggle",
    responses=problem_responses(400, 401, 403, 404, 422, 503, instance=f"{_INSTANCE}/availability", details=_WRITE),
)
async def put_availability(
    rep_id: RepId, availability: AvailabilityPut, session: SessionDep, actor: WriteKey
) -> RepPublic:
    """Turn the rep's availability on or off; in effect for the next assignment."""
    rep = await _existing(session, rep_id)
    return service.public(
        await service.set_availability(session=session, rep=rep, available=availability.available, actor=actor)
    )


@router.get(
    "",
    response_model=RepList,
    summary="List reps",
    responses=problem_responses(401, 403, 503, instance="/v1/reps", details=_READ),
)
async def list_reps(session: SessionDep, _key: ReadKey) -> RepList:
    """Every rep, by id; never a secret."""
    return RepList(reps=[service.public(rep) for rep in await service.get_all(session=session)])


@router.get(
    "/{rep_id}",
    response_model=RepPublic,
    summary="Read a rep",
    responses=problem_responses(401, 403, 404, 422, 503, instance=_INSTANCE, details=_READ),
)
async def read_rep(rep_id: RepId, session: SessionDep, _key: ReadKey) -> RepPublic:
    """One rep as last stored; never a secret."""
    return service.public(await _existing(session, rep_id))


async def _existing(session: SessionDep, rep_id: str) -> Rep:
    rep = await service.get(session=session, rep_id=rep_id)
    if rep is None:
        raise ProblemException(404, "Not Found", f"No rep with id {rep_id}.")
    return rep
