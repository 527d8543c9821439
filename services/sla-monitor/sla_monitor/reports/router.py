"""`/v1/sla/...`: a lead's obligations, the leads at risk and the compliance report (scope `sla:read`)."""

from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime

from leadrelay.apikeys import ApiKey, Scope, require_scopes
from leadrelay.db import SessionDep
from leadrelay.events import utcnow
from leadrelay.openapi import problem_responses
from leadrelay.problems import ProblemException
from sla_monitor.reports import service
from sla_monitor.reports.schemas import (
    EXAMPLE_LEAD_ID,
    AtRisk,
    AtRiskObligation,
    AtRiskTeam,
    GroupBy,
    LeadObligations,
    ObligationPublic,
    ReportGroup,
    ReportRow,
    ResponseTimes,
    SlaReport,
)

router = APIRouter(prefix="/v1/sla", tags=["sla"])

ReadKey = Annotated[ApiKey, Depends(require_scopes(Scope.SLA_READ))]
LeadId = Annotated[str, Path(min_length=1, max_length=36, description="The lead's id.", examples=[EXAMPLE_LEAD_ID])]
DEFAULT_WITHIN_SECONDS = 900
MAX_WITHIN_SECONDS = 7 * 86400
MAX_AT_RISK = 500
DEFAULT_REPORT_DAYS = 7
MAX_REPORT_DAYS = 366
_FORBIDDEN = "The API key lacks the scope(s): sla:read."


def _invalid(field: str, message: str) -> RequestValidationError:
    # The same 422 as a parameter FastAPI refuses itself: the field named in `errors`.
    return RequestValidationError([{"loc": ("query", field), "msg": message, "type": "value_error"}])


@router.get(
    "/leads/{lead_id}",
    response_model=LeadObligations,
    summary="List a lead's SLA obligations",
    responses=problem_responses(
        401,
        403,
        404,
        503,
        instance=f"/v1/sla/leads/{EXAMPLE_LEAD_ID}",
        details={403: _FORBIDDEN, 404: f"Lead {EXAMPLE_LEAD_ID} has no SLA obligations."},
    ),
)
async def read_lead_obligations(lead_id: LeadId, session: SessionDep, _key: ReadKey) -> LeadObligations:
    """Every obligation of every assignment of the lead, the newest assignment first, with time left on open ones."""
    timers = await service.lead_obligations(session=session, lead_id=lead_id)
    if not timers:
        raise ProblemException(404, "Not Found", f"Lead {lead_id} has no SLA obligations.")
    now = utcnow()
    return LeadObligations(
        lead_id=lead_id,
        obligations=[
            ObligationPublic.model_validate(
                {**timer.model_dump(), "remaining_seconds": service.remaining_seconds(timer, now=now)}
            )
            for timer in timers
        ],
    )


@router.get(
    "/at-risk",
    response_model=AtRisk,
    summary="List open obligations warned or due soon",
    responses=problem_responses(401, 403, 422, 503, instance="/v1/sla/at-risk", details={403: _FORBIDDEN}),
)
async def read_at_risk(
    session: SessionDep,
    _key: ReadKey,
    within_seconds: Annotated[
        int,
        Query(
            ge=0,
            le=MAX_WITHIN_SECONDS,
            description="Obligations due within this many seconds (besides those already warned).",
            examples=[DEFAULT_WITHIN_SECONDS],
        ),
    ] = DEFAULT_WITHIN_SECONDS,
    team_id: Annotated[
        str | None, Query(min_length=1, max_length=100, description="Only this team's.", examples=["team-emea"])
    ] = None,
    obligation: Annotated[
        str | None,
        Query(min_length=1, max_length=50, description="Only this obligation.", examples=["first_response"]),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_AT_RISK, description="At most this many (a plain cap).")] = 100,
) -> AtRisk:
    """Open obligations already warned or due within `within_seconds`, the soonest due first (a plain cap)."""
    now = utcnow()
    timers = await service.at_risk(
        session=session, now=now, within_seconds=within_seconds, team_id=team_id, obligation=obligation, limit=limit + 1
    )
    teams = await service.at_risk_by_team(
        session=session, now=now, within_seconds=within_seconds, team_id=team_id, obligation=obligation
    )
    return AtRisk(
        within_seconds=within_seconds,
        as_of=now,
        obligations=[
            AtRiskObligation.model_validate(
                {**timer.model_dump(), "remaining_seconds": service.remaining_seconds(timer, now=now)}
            )
            for timer in timers[:limit]
        ],
        truncated=len(timers) > limit,
        teams=[
            AtRiskTeam(team_id=team, at_risk=count, warned=warned, soonest_due_at=soonest)
            for team, count, warned, soonest in teams
        ],
    )


def _row(tally: service.Tally) -> dict[str, object]:
    def times(values: Sequence[float]) -> ResponseTimes:
        count, (p50, p90, p99) = service.percentiles(values)
        return ResponseTimes(count=count, p50=p50, p90=p90, p99=p99)

    return {
        "met": tally.met,
        "breached": tally.breached,
        "cancelled": tally.cancelled,
        "compliance": tally.compliance,
        "response_seconds": times(tally.response_seconds),
        "response_business_seconds": times(tally.response_business_seconds),
    }


@router.get(
    "/report",
    response_model=SlaReport,
    summary="Report SLA compliance and response times",
    responses=problem_responses(401, 403, 422, 503, instance="/v1/sla/report", details={403: _FORBIDDEN}),
)
async def read_report(
    session: SessionDep,
    _key: ReadKey,
    start: Annotated[
        AwareDatetime | None,
        Query(
            alias="from",
            description="The period's start, included (with a timezone); default: 7 days before `to`.",
            examples=["2026-11-20T00:00:00Z"],
        ),
    ] = None,
    end: Annotated[
        AwareDatetime | None,
        Query(
            alias="to",
            description="The period's end, excluded (with a timezone); default: now.",
            examples=["2026-11-27T00:00:00Z"],
        ),
    ] = None,
    group_by: Annotated[GroupBy, Query(description="One row per team, rep or obligation.")] = GroupBy.TEAM,
    team_id: Annotated[
        str | None, Query(min_length=1, max_length=100, description="Only this team's.", examples=["team-emea"])
    ] = None,
) -> SlaReport:
    """Per group: met, breached, cancelled closed in [from, to), compliance, and percentiles of responses in it."""
    end = end or utcnow()
    start = start or end - timedelta(days=DEFAULT_REPORT_DAYS)
    if start >= end:
        raise _invalid("from", "must be before `to`")
    if end - start > timedelta(days=MAX_REPORT_DAYS):
        raise _invalid("from", f"the period is at most {MAX_REPORT_DAYS} days")
    try:
        report = await service.report(session=session, start=start, end=end, group_by=group_by, team_id=team_id)
    except service.TooManyResponses:
        limit = service.MAX_REPORT_RESPONSES
        raise _invalid("from", f"the period holds more than {limit} responses: choose a shorter one") from None
    ordered = sorted(report.groups.items(), key=lambda item: (item[0] is None, item[0] or ""))
    return SlaReport.model_validate(
        {
            "from": start,
            "to": end,
            "group_by": group_by,
            "team_id": team_id,
            "groups": [ReportGroup.model_validate({"key": key, **_row(tally)}) for key, tally in ordered],
            "total": ReportRow.model_validate(_row(report.total)),
        }
    )
