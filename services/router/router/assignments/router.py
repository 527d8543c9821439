"""HTTP endpoints of assignments (`routing:read` to read)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from leadrelay.apikeys import ApiKey, Scope, require_scopes
from leadrelay.db import SessionDep
from leadrelay.openapi import problem_responses
from leadrelay.problems import ProblemException
from router.assignments import service
from router.assignments.models import Assignment
from router.assignments.schemas import EXAMPLE_LEAD_ID, AssignmentPublic, LeadAssignments

router = APIRouter(prefix="/v1/assignments", tags=["assignments"])

ReadKey = Annotated[ApiKey, Depends(require_scopes(Scope.ROUTING_READ))]
LeadId = Annotated[str, Path(min_length=1, max_length=36, description="The lead's id.", examples=[EXAMPLE_LEAD_ID])]
_INSTANCE = f"/v1/assignments/{EXAMPLE_LEAD_ID}"
_READ = {403: "The API key lacks the scope(s): routing:read.", 404: f"Lead {EXAMPLE_LEAD_ID} has not been routed."}


def public(assignment: Assignment) -> AssignmentPublic:
    """The answer's form of a stored decision."""
    return AssignmentPublic.model_validate(assignment, from_attributes=True)


@router.get(
    "/{lead_id}",
    response_model=LeadAssignments,
    summary="Explain a lead's assignment",
    responses=problem_responses(401, 403, 404, 422, 503, instance=_INSTANCE, details=_READ),
)
async def read_assignment(lead_id: LeadId, session: SessionDep, _key: ReadKey) -> LeadAssignments:
    """The lead's current decision with its explanation (rules, actions, candidates), and every decision before it."""
    history = await service.get_history(session=session, lead_id=lead_id)
    if not history:
        raise ProblemException(404, "Not Found", f"Lead {lead_id} has not been routed.")
    return LeadAssignments(lead_id=lead_id, current=public(history[-1]), history=[public(row) for row in history])
