"""HTTP endpoint of reassignment (`routing:write`): move a lead by hand, with a reason."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError

from leadrelay.apikeys import ApiKey, Scope, require_scopes
from leadrelay.db import SessionDep
from leadrelay.events import AssignmentTrigger
from leadrelay.openapi import problem_responses
from leadrelay.problems import CONFLICT_PROBLEM, ProblemException
from router.assignments import service as assignments
from router.assignments.router import LeadId, public
from router.assignments.schemas import EXAMPLE_LEAD_ID, LeadAssignments
from router.context import RouterContext
from router.reassignment import service
from router.reassignment.schemas import ReassignRequest

router = APIRouter(prefix="/v1/assignments", tags=["assignments"])

WriteKey = Annotated[ApiKey, Depends(require_scopes(Scope.ROUTING_WRITE))]
_INSTANCE = f"/v1/assignments/{EXAMPLE_LEAD_ID}/reassign"
_DETAILS = {
    403: "The API key lacks the scope(s): routing:write.",
    404: f"Lead {EXAMPLE_LEAD_ID} has not been routed.",
    409: "Rep rep-ada holds the lead already.",
    422: "rep_id: no rep with id rep-nobody",
}


def get_context(request: Request) -> RouterContext:
    """The process's router context (rulesets, roster cache)."""
    context: RouterContext = request.app.state.router_context
    return context


ContextDep = Annotated[RouterContext, Depends(get_context)]


def _conflict(detail: str) -> ProblemException:
    return ProblemException(409, "Conflict", detail, type_=CONFLICT_PROBLEM)


@router.post(
    "/{lead_id}/reassign",
    response_model=LeadAssignments,
    summary="Reassign a lead by hand",
    responses=problem_responses(400, 401, 403, 404, 409, 422, 503, instance=_INSTANCE, details=_DETAILS),
)
async def reassign_lead(
    lead_id: LeadId, body: ReassignRequest, session: SessionDep, context: ContextDep, actor: WriteKey
) -> LeadAssignments:
    """Move the lead to the named rep, or to the next available rep who has not held it (else the team's manager,
    else the team's queue); audited, announced (lead.assigned or lead.queued, trigger `manual`) and notified.

    Answers as `GET /v1/assignments/{lead_id}`, the new decision current. 409 when the named rep holds the lead,
    when nobody is left and the lead is in its team's queue already, or when another reassignment won the race.
    """
    try:
        reassigned = await service.reassign(
            session=session,
            context=context,
            lead_id=lead_id,
            trigger=AssignmentTrigger.MANUAL,
            reason=body.reason,
            rep_id=body.rep_id,
        )
    except service.NotRouted:
        raise ProblemException(404, "Not Found", f"Lead {lead_id} has not been routed.") from None
    except service.RepRefused as refused:
        raise RequestValidationError(
            [{"loc": ("body", "rep_id"), "msg": str(refused), "type": "value_error"}]
        ) from None
    except (service.AlreadyHolds, service.NobodyLeft) as conflict:
        raise _conflict(str(conflict)) from None
    if reassigned is None:
        raise _conflict(f"Lead {lead_id} was reassigned by another request meanwhile: read it, and retry if need be.")
    service.audited(session, actor=actor, reassigned=reassigned)
    await session.commit()
    history = await assignments.get_history(session=session, lead_id=lead_id)
    return LeadAssignments(lead_id=lead_id, current=public(history[-1]), history=[public(row) for row in history])
