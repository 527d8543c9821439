"""HTTP endpoints for leads."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status

from intake.leads import service
from intake.leads.schemas import EXAMPLE_LEAD_ID, LeadAccepted, LeadCreate, LeadPublic, TimelineEntryPublic
from leadrelay.apikeys import ApiKey, Scope, require_scopes
from leadrelay.batching import WriterDep
from leadrelay.db import SessionDep
from leadrelay.openapi import problem_responses
from leadrelay.problems import ProblemException

router = APIRouter(prefix="/v1/leads", tags=["leads"])

WriteKey = Annotated[ApiKey, Depends(require_scopes(Scope.LEADS_WRITE))]
ReadKey = Annotated[ApiKey, Depends(require_scopes(Scope.LEADS_READ))]
LeadId = Annotated[str, Path(description="The id `POST /v1/leads` answered.", examples=[EXAMPLE_LEAD_ID])]


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=LeadAccepted,
    summary="Accept a lead",
    responses=problem_responses(400, 401, 403, 422, 503, instance="/v1/leads"),
)
async def create_lead(lead_in: LeadCreate, writer: WriterDep, _key: WriteKey, response: Response) -> LeadAccepted:
    """Store the lead and queue lead.received; 202 means it is durable and will be scored and routed."""
    lead = await service.create(writer=writer, lead_in=lead_in)
    response.headers["Location"] = f"/v1/leads/{lead.id}"
    return LeadAccepted(id=lead.id)


@router.get(
    "/{lead_id}",
    response_model=LeadPublic,
    summary="Read a lead",
    responses=problem_responses(
        401,
        403,
        404,
        503,
        instance=f"/v1/leads/{EXAMPLE_LEAD_ID}",
        details={403: "The API key lacks the scope(s): leads:read.", 404: f"No lead with id {EXAMPLE_LEAD_ID}."},
    ),
)
async def read_lead(lead_id: LeadId, session: SessionDep, _key: ReadKey) -> LeadPublic:
    """The lead with its current stage, score, owner, SLA state and full timeline."""
    lead = await service.get(session=session, lead_id=lead_id)
    if lead is None:
        raise ProblemException(404, "Not Found", f"No lead with id {lead_id}.")
    timeline = await service.get_timeline(session=session, lead_id=lead_id)
    return LeadPublic.model_validate(
        {
            **lead.model_dump(),
            "timeline": [TimelineEntryPublic.model_validate(entry, from_attributes=True) for entry in timeline],
        }
    )
