"""HTTP endpoints of notifications: a lead's delivery log (`routing:read`)."""

from fastapi import APIRouter

from leadrelay.db import SessionDep
from leadrelay.openapi import problem_responses
from leadrelay.problems import ProblemException
from router.assignments import service as assignments
from router.assignments.router import LeadId, ReadKey
from router.assignments.schemas import EXAMPLE_LEAD_ID
from router.notifications import service
from router.notifications.schemas import DeliveryPublic, LeadDeliveries

router = APIRouter(prefix="/v1/assignments", tags=["assignments"])

_INSTANCE = f"/v1/assignments/{EXAMPLE_LEAD_ID}/deliveries"
_READ = {403: "The API key lacks the scope(s): routing:read.", 404: f"Lead {EXAMPLE_LEAD_ID} has not been routed."}


@router.get(
    "/{lead_id}/deliveries",
    response_model=LeadDeliveries,
    summary="List a lead's notifications to reps",
    responses=problem_responses(401, 403, 404, 422, 503, instance=_INSTANCE, details=_READ),
)
async def read_deliveries(lead_id: LeadId, session: SessionDep, _key: ReadKey) -> LeadDeliveries:
    """Each notification of the lead's assignments: channel, status, attempts and the last answer (never a URL)."""
    deliveries = await service.get_deliveries(session=session, lead_id=lead_id)
    if not deliveries and await assignments.get_current(session=session, lead_id=lead_id) is None:
        raise ProblemException(404, "Not Found", f"Lead {lead_id} has not been routed.")
    return LeadDeliveries(
        lead_id=lead_id,
        deliveries=[DeliveryPublic.model_validate(delivery, from_attributes=True) for delivery in deliveries],
    )
