"""HTTP endpoints for activities on leads (scope `activities:write`)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, status
from fastapi.responses import JSONResponse

from intake.activities import service
from intake.activities.schemas import EXAMPLE_LEAD_ID, ActivityCreate, ActivityPublic
from leadrelay import idempotency_keys
from leadrelay.apikeys import ApiKey, Scope, require_scopes
from leadrelay.db import SessionDep
from leadrelay.idempotency_keys import IdempotencyKeyHeader
from leadrelay.openapi import problem_example, problem_responses
from leadrelay.problems import PROBLEM_JSON, FieldError, Problem, ProblemException
from leadrelay.stages import InvalidTransition

router = APIRouter(prefix="/v1/leads", tags=["activities"])

INVALID_TRANSITION_PROBLEM = "urn:leadrelay:problem:invalid-transition"

ActivitiesKey = Annotated[ApiKey, Depends(require_scopes(Scope.ACTIVITIES_WRITE))]
LeadId = Annotated[str, Path(description="The id `POST /v1/leads` answered.", examples=[EXAMPLE_LEAD_ID])]

_INSTANCE = f"/v1/leads/{EXAMPLE_LEAD_ID}/activities"
_409_EXAMPLE = {
    **problem_example(409, instance=_INSTANCE, detail="The lead is in stage sal, where accepted is not allowed."),
    "type": INVALID_TRANSITION_PROBLEM,
    "title": "Invalid transition",
    "errors": [{"field": "type", "pointer": "/type", "message": "not allowed in stage sal"}],
}


@router.post(
    "/{lead_id}/activities",
    status_code=status.HTTP_201_CREATED,
    response_model=ActivityPublic,
    summary="Record an activity on a lead",
    responses={
        **idempotency_keys.replayable(201, "Recorded: the lead's new stage, on its timeline, published"),
        200: {
            "model": ActivityPublic,
            "description": "The lead already has an activity with this `external_id`: that activity, nothing recorded",
        },
        **problem_responses(
            400,
            401,
            403,
            404,
            422,
            503,
            instance=_INSTANCE,
            details={
                403: "The API key lacks the scope(s): activities:write.",
                404: f"No lead with id {EXAMPLE_LEAD_ID}.",
            },
        ),
        409: {
            "model": Problem,
            "description": "The lead's current stage (named in `detail`) does not allow this activity; nothing stored",
            "content": {PROBLEM_JSON: {"example": _409_EXAMPLE}},
        },
    },
)
async def record_activity(
    lead_id: LeadId,
    activity_in: ActivityCreate,
    session: SessionDep,
    key: ActivitiesKey,
    request: Request,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Move the lead through its lifecycle (docs/lifecycle.md), add the activity to its timeline, publish it."""
    idempotency = idempotency_keys.request_for(
        request, owner=key.id, key=idempotency_key, payload=activity_in.model_dump(mode="json")
    )
    try:
        answer = await service.record(
            session=session, lead_id=lead_id, activity_in=activity_in, idempotency=idempotency
        )
    except service.LeadNotFound:
        raise ProblemException(404, "Not Found", f"No lead with id {lead_id}.") from None
    except InvalidTransition as invalid:
        stage, activity = invalid.stage.value, invalid.activity.value
        problem = ProblemException(
            409,
            "Invalid transition",
            f"The lead is in stage {stage}, where {activity} is not allowed.",
            type_=INVALID_TRANSITION_PROBLEM,
        )
        problem.problem.errors = [FieldError(field="type", pointer="/type", message=f"not allowed in stage {stage}")]
        raise problem from None
    return idempotency_keys.response(answer)
