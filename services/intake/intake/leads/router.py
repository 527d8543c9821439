"""HTTP endpoints for leads."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from intake.leads import service
from intake.leads.models import RoutingOutcome
from intake.leads.schemas import (
    EXAMPLE_LEAD_ID,
    MAX_BATCH_ITEMS,
    LeadAccepted,
    LeadBatch,
    LeadBatchResults,
    LeadCreate,
    LeadPage,
    LeadPublic,
    LeadRead,
    LeadTimeline,
    TimelineEntryPublic,
    decode_cursor,
    encode_cursor,
)
from leadrelay import idempotency_keys
from leadrelay.apikeys import ApiKey, Scope, require_scopes
from leadrelay.batching import WriterDep
from leadrelay.db import SessionDep
from leadrelay.idempotency_keys import IdempotencyKeyHeader
from leadrelay.openapi import problem_responses
from leadrelay.problems import (
    VALIDATION_PROBLEM,
    Problem,
    ProblemException,
    item_field_errors,
    problem_response,
)
from leadrelay.stages import LeadStage, SlaState

router = APIRouter(prefix="/v1/leads", tags=["leads"])

WriteKey = Annotated[ApiKey, Depends(require_scopes(Scope.LEADS_WRITE))]
ReadKey = Annotated[ApiKey, Depends(require_scopes(Scope.LEADS_READ))]
LeadId = Annotated[str, Path(description="The id `POST /v1/leads` answered.", examples=[EXAMPLE_LEAD_ID])]


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=LeadAccepted,
    summary="Accept a lead",
    responses={
        **idempotency_keys.replayable(202, "Accepted (`accepted`), or the person's lead re-engaged (`reengaged`)"),
        **problem_responses(400, 401, 403, 422, 503, instance="/v1/leads"),
    },
)
async def create_lead(
    lead_in: LeadCreate,
    writer: WriterDep,
    key: WriteKey,
    request: Request,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Store the lead and queue lead.received (202 `accepted`), or re-engage the person's lead (202 `reengaged`)."""
    idempotency = idempotency_keys.request_for(
        request, owner=key.id, key=idempotency_key, payload=lead_in.model_dump(mode="json")
    )
    answer = await service.create(writer=writer, lead_in=lead_in, idempotency=idempotency)
    return idempotency_keys.response(answer, headers={"Location": f"/v1/leads/{answer.body['id']}"})


def _item(index: int, raw: Any) -> LeadCreate | Problem:
    try:
        return LeadCreate.model_validate(raw)
    except ValidationError as invalid:
        errors = item_field_errors(invalid, at=("leads", str(index)))
        detail = "; ".join(f"{error.field}: {error.message}" for error in errors)
        return Problem(type=VALIDATION_PROBLEM, title="Invalid lead", status=422, detail=detail, errors=errors)


@router.post(
    ":batch",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=LeadBatchResults,
    summary="Accept up to 1,000 leads",
    responses={
        **idempotency_keys.replayable(202, "One result per item, in order"),
        **problem_responses(400, 401, 403, 422, 503, instance="/v1/leads:batch"),
    },
)
async def create_leads(
    batch: LeadBatch,
    writer: WriterDep,
    key: WriteKey,
    request: Request,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Each item is checked on its own; the valid ones are stored in one transaction; one result per item, in order.

    When no item is valid, nothing is stored and the answer is 422 naming every failing field.
    """
    items = [_item(index, raw) for index, raw in enumerate(batch.leads)]
    problems = [item for item in items if isinstance(item, Problem)]
    if len(problems) == len(items):
        errors = [error for problem in problems for error in problem.errors]
        detail = f"No lead of the {len(items)} is valid (at most {MAX_BATCH_ITEMS} per batch)."
        return problem_response(
            Problem(type=VALIDATION_PROBLEM, title="Invalid request", status=422, detail=detail, errors=errors),
            request,
        )
    idempotency = idempotency_keys.request_for(request, owner=key.id, key=idempotency_key, payload=batch.leads)
    answer = await service.create_many(writer=writer, items=items, idempotency=idempotency)
    return idempotency_keys.response(answer)


@router.get(
    "",
    response_model=LeadPage,
    summary="List leads",
    responses=problem_responses(
        401, 403, 422, 503, instance="/v1/leads", details={403: "The API key lacks the scope(s): leads:read."}
    ),
)
async def list_leads(
    session: SessionDep,
    _key: ReadKey,
    stage: Annotated[LeadStage | None, Query(description="Only leads in this stage.")] = None,
    owner_rep_id: Annotated[str | None, Query(max_length=100, description="Only leads this rep owns.")] = None,
    queue_team_id: Annotated[
        str | None,
        Query(max_length=100, description="Only leads waiting in this team's queue.", examples=["team-emea"]),
    ] = None,
    routing_outcome: Annotated[
        RoutingOutcome | None,
        Query(description="Only leads whose latest routing decision had this outcome.", examples=["queued"]),
    ] = None,
    source: Annotated[str | None, Query(max_length=100, description="Only leads from this source.")] = None,
    grade: Annotated[
        str | None,
        Query(pattern="^[A-D][1-4]$", description="Only leads of this grade (latest score).", examples=["A1"]),
    ] = None,
    mql: Annotated[
        bool | None, Query(description="Only MQLs (true), or only leads that are not (false).", examples=[True])
    ] = None,
    sla_state: Annotated[
        SlaState | None,
        Query(description="Only leads whose most urgent SLA obligation is in this state.", examples=["breached"]),
    ] = None,
    updated_since: Annotated[
        datetime | None, Query(description="Only leads updated at or after this time (with a timezone).")
    ] = None,
    cursor: Annotated[str | None, Query(max_length=400, description="`next_cursor` of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Leads per page.")] = 100,
) -> LeadPage:
    """Leads oldest received first; paging returns each lead that existed when it began exactly once."""
    if updated_since is not None and updated_since.tzinfo is None:
        raise ProblemException(422, "Invalid request", "updated_since: must have a timezone", type_=VALIDATION_PROBLEM)
    try:
        after = decode_cursor(cursor) if cursor is not None else None
    except ValueError as exc:
        raise ProblemException(422, "Invalid request", f"cursor: {exc}", type_=VALIDATION_PROBLEM) from None
    leads = await service.list_leads(
        session=session,
        stage=stage,
        owner_rep_id=owner_rep_id,
        queue_team_id=queue_team_id,
        routing_outcome=routing_outcome,
        sla_state=sla_state,
        source=source,
        grade=grade,
        mql=mql,
        updated_since=updated_since,
        after=after,
        limit=limit + 1,
    )
    page = leads[:limit]
    next_cursor = encode_cursor(received_at=page[-1].received_at, lead_id=page[-1].id) if len(leads) > limit else None
    return LeadPage(leads=[LeadRead.model_validate(lead.model_dump()) for lead in page], next_cursor=next_cursor)


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


@router.get(
    "/{lead_id}/timeline",
    response_model=LeadTimeline,
    summary="Read a lead's timeline",
    responses=problem_responses(
        401,
        403,
        404,
        503,
        instance=f"/v1/leads/{EXAMPLE_LEAD_ID}/timeline",
        details={403: "The API key lacks the scope(s): leads:read.", 404: f"No lead with id {EXAMPLE_LEAD_ID}."},
    ),
)
async def read_timeline(lead_id: LeadId, session: SessionDep, _key: ReadKey) -> LeadTimeline:
    """The lead's events, oldest first: received, re-engagements, score, assignment, SLA."""
    lead = await service.get(session=session, lead_id=lead_id)
    if lead is None:
        raise ProblemException(404, "Not Found", f"No lead with id {lead_id}.")
    timeline = await service.get_timeline(session=session, lead_id=lead_id)
    return LeadTimeline(
        lead_id=lead_id,
        timeline=[TimelineEntryPublic.model_validate(entry, from_attributes=True) for entry in timeline],
    )
