"""Impact preview: what an ICP version would change, scored on the leads of the last days, before anyone signs it.

Reads only: stored scores (their facts) and engagements are evaluated under the version and under
the active ICP at the same moment; nothing is stored and no event is published.
"""

import asyncio
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import Text, cast
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.agreements import service as agreements
from leadrelay.apikeys import ApiKey, require_scopes
from leadrelay.db import SessionDep
from leadrelay.events import utcnow
from leadrelay.openapi import problem_responses
from leadrelay.problems import ProblemException
from leadrelay.stages import ActivityType
from scoring.icp.document import ICP, IcpDocument
from scoring.icp.engine import CompiledIcp, Engagement, Evaluation, compile_icp, default_icp
from scoring.scores.models import LeadEngagement, LeadScore

CHUNK = 10_000
"""Leads read per query, and their engagements in one more (rows as tuples, never ORM objects).

Larger chunks mean fewer round trips and thread hand-offs; 10,000 leads' facts stay a few MB.
"""
SAMPLE = 50
DEFAULT_DAYS, MAX_DAYS = 30, 365
CELLS = [f"{fit}{engagement}" for fit in "ABCD" for engagement in range(1, 5)]

_ACTIVITIES = {activity.value: activity for activity in ActivityType}


class MqlCounts(BaseModel):
    """MQLs under the active ICP (before) and under the previewed version (after)."""

    before: int
    after: int


class GradeMatrix(BaseModel):
    """Leads per grade cell, A1 to D4, before and after."""

    before: dict[str, int]
    after: dict[str, int]


class SourceShift(BaseModel):
    """One lead source: its leads and their MQLs before and after."""

    source: str
    leads: int
    mql_before: int
    mql_after: int


class CriterionChange(BaseModel):
    """A criterion whose points differ between the two versions (0 where a version lacks it)."""

    criterion: str
    before: int
    after: int


class Decision(BaseModel):
    """A lead's grade and MQL decision under one version."""

    grade: str
    mql: bool
    mql_reason: str
    disqualified: str | None = None


class Flip(BaseModel):
    """A lead whose MQL decision the version would change, and the criteria that changed it."""

    lead_id: str
    source: str
    before: Decision
    after: Decision
    criteria: list[CriterionChange]


class IcpPreview(BaseModel):
    """What an ICP version would change over the leads of the last `days` days."""

    version: int
    compared_with: str = Field(description="The active version's number, or `default` before any is signed.")
    days: int
    since: datetime
    scored_at: datetime
    leads: int
    mql: MqlCounts
    grades: GradeMatrix
    sources: list[SourceShift]
    flips: int = Field(description="Leads whose MQL decision flips (the sample shows at most 50).")
    sample: list[Flip]


@dataclass
class _Tally:
    """Counts over the leads seen so far."""

    leads: int = 0
    mql_before: int = 0
    mql_after: int = 0
    before: Counter[str] = field(default_factory=Counter)
    after: Counter[str] = field(default_factory=Counter)
    sources: dict[str, list[int]] = field(default_factory=dict)
    flips: int = 0
    sample: list[Flip] = field(default_factory=list)

    def add(self, source: str, before: tuple[str, bool], after: tuple[str, bool]) -> bool:
        """Count one lead's decisions; whether its MQL decision flips."""
        self.leads += 1
        self.before[before[0]] += 1
        self.after[after[0]] += 1
        self.mql_before += before[1]
        self.mql_after += after[1]
        counts = self.sources.setdefault(source, [0, 0, 0])
        counts[0] += 1
        counts[1] += before[1]
        counts[2] += after[1]
        if before[1] == after[1]:
            return False
        self.flips += 1
        return True


def _flip(lead_id: str, source: str, before: Evaluation, after: Evaluation) -> Flip:
    old = {item.criterion: item.points for item in before.criteria}
    new = {item.criterion: item.points for item in after.criteria}
    changes = [
        CriterionChange(criterion=name, before=old.get(name, 0), after=new.get(name, 0))
        for name in dict.fromkeys([*old, *new])
        if old.get(name, 0) != new.get(name, 0)
    ]
    return Flip(lead_id=lead_id, source=source, before=_decision(before), after=_decision(after), criteria=changes)


def _decision(evaluation: Evaluation) -> Decision:
    return Decision(
        grade=evaluation.grade,
        mql=evaluation.mql,
        mql_reason=evaluation.mql_reason,
        disqualified=evaluation.disqualified,
    )


async def preview(*, session: AsyncSession, version: int, days: int, now: datetime | None = None) -> IcpPreview:
    """Score the leads received in the last `days` days under `version` and under the active ICP; store nothing."""
    now = now or utcnow()
    record = await agreements.get(session, kind=ICP.name, version=version)
    if record is None:
        raise ProblemException(404, "Not Found", f"No icp version {version}.")
    candidate = _compiled(record.version.document, str(version))
    if candidate is None:
        detail = f"icp version {version} was drafted in an earlier format; it cannot be scored."
        raise ProblemException(422, "Unprocessable Content", detail)
    active_record = await agreements.get_active(session, kind=ICP.name)
    active = (
        _compiled(active_record.version.document, str(active_record.version.version)) if active_record else None
    ) or default_icp()
    since = now - timedelta(days=days)
    tally = _Tally()
    scoring: asyncio.Future[None] | None = None
    connection = await session.connection()  # Core rows: no ORM identity map for 100,000 leads
    # One query, streamed in chunks: the database sorts the window once (pages by id would sort it per page).
    leads = await connection.stream(
        select(col(LeadScore.lead_id), col(LeadScore.source), cast(col(LeadScore.facts), Text))
        .where(col(LeadScore.received_at) >= since)
        .order_by(col(LeadScore.lead_id))
    )
    try:
        async for rows in leads.partitions(CHUNK):
            engagements = await _engagements_of(connection, since=since, first=rows[0][0], last=rows[-1][0])
            if scoring is not None:
                await scoring
            # Evaluating a chunk is CPU work: off the event loop, while the next chunk is read.
            scoring = asyncio.ensure_future(
                asyncio.to_thread(_score_chunk, tally, rows, engagements, active, candidate, now)
            )
    finally:
        await leads.close()
        if scoring is not None:
            await scoring  # also when reading failed: the thread's outcome is never left unclaimed
    return IcpPreview(
        version=version,
        compared_with=active.version,
        days=days,
        since=since,
        scored_at=now,
        leads=tally.leads,
        mql=MqlCounts(before=tally.mql_before, after=tally.mql_after),
        grades=GradeMatrix(
            before={cell: tally.before[cell] for cell in CELLS}, after={cell: tally.after[cell] for cell in CELLS}
        ),
        sources=[
            SourceShift(source=source, leads=leads, mql_before=before, mql_after=after)
            for source, (leads, before, after) in sorted(tally.sources.items())
        ],
        flips=tally.flips,
        sample=tally.sample,
    )


def _compiled(document: dict[str, Any], version: str) -> CompiledIcp | None:
    try:
        return compile_icp(IcpDocument.model_validate(document), version=version)
    except ValidationError:
        return None


async def _engagements_of(
    connection: AsyncConnection, *, since: datetime, first: str, last: str
) -> dict[str, list[Engagement]]:
    """The engagements of the leads received since `since` with ids from `first` to `last` (a range: no bound list)."""
    rows = (
        await connection.execute(
            select(col(LeadEngagement.lead_id), col(LeadEngagement.activity), col(LeadEngagement.occurred_at))
            .join(LeadScore, col(LeadScore.lead_id) == col(LeadEngagement.lead_id))
            .where(
                col(LeadEngagement.lead_id) >= first,
                col(LeadEngagement.lead_id) <= last,
                col(LeadScore.received_at) >= since,
            )
        )
    ).all()
    found: dict[str, list[Engagement]] = {}
    for lead_id, activity, occurred_at in rows:
        if activity in _ACTIVITIES:
            found.setdefault(lead_id, []).append(Engagement(_ACTIVITIES[activity], occurred_at))
    return found


def _score_chunk(
    tally: _Tally,
    rows: Sequence[Any],
    engagements: dict[str, list[Engagement]],
    active: CompiledIcp,
    candidate: CompiledIcp,
    now: datetime,
) -> None:
    for lead_id, source, stored in rows:
        # Read as text (PostgreSQL's driver would decode JSON on the event loop) and decoded here, off it.
        facts = json.loads(stored)
        done = engagements.get(lead_id, ())
        flipped = tally.add(source, active.decide(facts, done, now=now), candidate.decide(facts, done, now=now))
        if flipped and len(tally.sample) < SAMPLE:
            # Only a sampled flip needs the explanations, to name the criteria that changed.
            before, after = active.evaluate(facts, done, now=now), candidate.evaluate(facts, done, now=now)
            tally.sample.append(_flip(lead_id, source, before, after))


router = APIRouter(prefix="/v1/icp", tags=["icp"])

_EXAMPLE = {
    "version": 3,
    "compared_with": "2",
    "days": 30,
    "since": "2026-10-28T12:00:00Z",
    "scored_at": "2026-11-27T12:00:00Z",
    "leads": 1840,
    "mql": {"before": 212, "after": 264},
    "grades": {
        "before": dict(zip(CELLS, [40, 31, 22, 60, 55, 70, 41, 150, 30, 44, 60, 300, 20, 25, 92, 800], strict=True)),
        "after": dict(zip(CELLS, [52, 38, 30, 75, 60, 72, 45, 160, 28, 40, 55, 280, 12, 20, 73, 780], strict=True)),
    },
    "sources": [
        {"source": "pricing-page", "leads": 410, "mql_before": 88, "mql_after": 97},
        {"source": "webinar", "leads": 620, "mql_before": 64, "mql_after": 101},
    ],
    "flips": 61,
    "sample": [
        {
            "lead_id": "0b9f6a7e-3c1d-4a55-9f0e-2d6c1b8e4a10",
            "source": "webinar",
            "before": {"grade": "C2", "mql": False, "mql_reason": "fit_and_engaged: fit C below B",
                       "disqualified": None},
            "after": {"grade": "B2", "mql": True, "mql_reason": "fit_and_engaged: fit B, engagement 2",
                      "disqualified": None},
            "criteria": [{"criterion": "target_region", "before": 0, "after": 15}],
        }
    ],
}  # fmt: skip


@router.post(
    "/versions/{version}/preview",
    response_model=IcpPreview,
    summary="Preview what an ICP version would change",
    responses={
        200: {"content": {"application/json": {"example": _EXAMPLE}}},
        **problem_responses(
            401,
            404,
            422,
            503,
            instance="/v1/icp/versions/3/preview",
            details={
                404: "No icp version 3.",
                422: "icp version 3 was drafted in an earlier format; it cannot be scored.",
            },
        ),
    },
)
async def preview_version(
    version: Annotated[int, Path(ge=1, description="The version to preview (any status).", examples=[3])],
    session: SessionDep,
    _key: Annotated[ApiKey, Depends(require_scopes(*ICP.read_scopes))],
    days: Annotated[int, Query(ge=1, le=MAX_DAYS, description="Leads received in the last DAYS days.")] = DEFAULT_DAYS,
) -> IcpPreview:
    """Score the leads of the last `days` days under this version and under the active ICP (or `default`).

    Answers the MQL count before and after, the A1-D4 grade matrix before and after, the shift per
    source and a sample of at most 50 leads whose MQL decision flips, with the criteria whose points
    differ. It changes nothing.
    """
    return await preview(session=session, version=version, days=days)
