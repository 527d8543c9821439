"""Scores: each lead evaluated under the active ICP, with its account, engagements and MQL decision (made once).

Every function here reads the scores and engagements of a whole batch in one query each, and locks
the scores it may change (in lead-id order, so the consumer and the re-scoring job never deadlock):
the MQL transition of a lead happens once, whichever of them evaluates it first.
"""

from collections import defaultdict
from collections.abc import Container, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import bindparam, func, insert, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from leadrelay import db
from leadrelay.agreements import service as agreements
from leadrelay.agreements.models import AgreementHead
from leadrelay.events import (
    AccountMatch,
    LeadActivity,
    LeadReceived,
    LeadScored,
    MatchMethod,
    ScoreTrigger,
    utcnow,
)
from leadrelay.stages import SCORING_STAGES, ActivityType, LeadStage
from scoring.accounts import service as accounts
from scoring.icp.document import ICP, IcpDocument
from scoring.icp.engine import CompiledIcp, Engagement, Evaluation, compile_icp, default_icp
from scoring.scores.models import LeadEngagement, LeadScore, RescoreRun

ICP_KIND = ICP.name
T = TypeVar("T")


_ACTIVE_VERSION = select(AgreementHead.active_version).where(AgreementHead.kind == ICP_KIND)


class IcpVersions:
    """The compiled ICPs of this process, one per version, compiled once.

    The active version is read from the agreement head on every call (one primary-key read), so an
    activation on any replica is seen by the others at their next batch.
    """

    def __init__(self) -> None:
        self._compiled: dict[int, CompiledIcp] = {}
        self._default = default_icp()

    async def active(self, session: AsyncSession) -> CompiledIcp:
        """The ICP in force now: the active version, or the default before any is signed."""
        version = (await session.exec(_ACTIVE_VERSION)).first()
        return self._default if version is None else await self.version(session, version)

    async def version(self, session: AsyncSession, version: int) -> CompiledIcp:
        """One version, compiled on first use."""
        compiled = self._compiled.get(version)
        if compiled is None:
            record = await agreements.get(session, kind=ICP_KIND, version=version)
            if record is None:
                raise LookupError(f"ICP version {version} does not exist")
            document = IcpDocument.model_validate(record.version.document)
            compiled = self._compiled[version] = compile_icp(document, version=str(version))
        return compiled


async def score_received(
    *,
    session: AsyncSession,
    leads: Sequence[LeadReceived],
    icp: CompiledIcp,
    fuzzy_threshold: float = accounts.FUZZY_THRESHOLD,
    now: datetime | None = None,
) -> tuple[list[LeadScored], list[AccountMatch | None]]:
    """Match, enrich, evaluate and store received leads, in order; a lead seen before is scored again.

    Returns each lead's lead.scored and its account match (for the match metrics). Scores are
    written as plain rows, one statement for the new leads and one for those seen before: building
    a LeadScore object cost more than the rest of scoring a lead.
    """
    now = now or utcnow()
    matched = await accounts.match_many(session=session, leads=leads, fuzzy_threshold=fuzzy_threshold)
    ids = [lead.lead_id for lead in leads]
    known = await _locked_mql_states(session, ids)
    engagements = await _engagements(session, ids)
    rows: dict[str, dict[str, Any]] = {}
    results = []
    for lead, account in zip(leads, matched, strict=True):
        payload = lead.model_dump(mode="json")
        facts, enriched = accounts.enrich(payload, account)
        match = account.match if account else None
        # What a lead keeps from an earlier score (or from earlier in this batch): its MQL state and stage.
        earlier = rows.get(lead.lead_id) or known.get(lead.lead_id) or {}
        row = rows[lead.lead_id] = db.new_row(
            LeadScore,
            lead_id=lead.lead_id,
            score=0,
            stage=earlier.get("stage", LeadStage.LEAD),
            icp_version=icp.version,
            mql=earlier.get("mql", False),
            mql_at=earlier.get("mql_at"),
            mql_reason=earlier.get("mql_reason"),
            source=lead.source,
            received_at=lead.received_at,
            facts=facts,
            lead=payload,
            account_id=match.account_id if match else None,
            match_method=match.method.value if match else None,
            match_confidence=match.confidence if match else None,
            enriched_fields=enriched,
        )
        evaluation = icp.evaluate(facts, engagements.get(lead.lead_id, []), now=now)
        results.append(_apply(row, icp, evaluation, ScoreTrigger.RECEIVED, now, lead=lead))
    await _store(session, rows, known=known)
    return results, [account.match if account else None for account in matched]


async def record_activities(
    *,
    session: AsyncSession,
    activities: Sequence[tuple[str, LeadActivity]],
    icp: CompiledIcp,
    now: datetime | None = None,
) -> list[LeadScored]:
    """Store rep stages and engagements (once per event id), then re-score each lead with a new engagement once.

    `activities` are (event id, activity) in the order they happened. An engagement of a lead not
    seen yet is stored, and counts when the lead arrives; a rep's stage of an unseen lead is dropped.
    """
    now = now or utcnow()
    staged = {a.lead_id: a.stage for _, a in activities if not a.activity.is_engagement and a.stage is not None}
    engaged_ids = await _store_engagements(
        session, [(event_id, a) for event_id, a in activities if a.activity.is_engagement]
    )
    stored = await _locked_scores(session, list(dict.fromkeys([*staged, *engaged_ids])))
    for lead_id, stage in staged.items():
        if lead_id in stored:
            stored[lead_id].stage = stage
            session.add(stored[lead_id])
    engaged = [lead_id for lead_id in engaged_ids if lead_id in stored]
    engagements = await _engagements(session, engaged)
    results = []
    for lead_id in engaged:
        record = stored[lead_id]
        evaluation = icp.evaluate(record.facts, engagements.get(lead_id, []), now=now)
        results.append(_apply_to_record(session, record, icp, evaluation, ScoreTrigger.ENGAGEMENT, now))
    return results


async def start_rescore_run(
    *, session: AsyncSession, icp_version: int, days: int, now: datetime | None = None
) -> RescoreRun | None:
    """Record the re-scoring of open leads under a newly active version; unfinished older runs are superseded.

    None when this version already has a run (the activation was seen before).
    """
    now = now or utcnow()
    existing = (await session.exec(select(RescoreRun).where(RescoreRun.icp_version == icp_version))).first()
    if existing is not None:
        return None
    await session.exec(
        update(RescoreRun).where(col(RescoreRun.finished_at).is_(None)).values(finished_at=now, superseded=True)
    )
    run = RescoreRun(icp_version=icp_version, started_at=now, received_since=now - timedelta(days=days))
    session.add(run)
    await session.flush()
    return run


async def current_run(session: AsyncSession) -> RescoreRun | None:
    """The unfinished re-scoring run of the newest version, if any (locked until the transaction ends)."""
    statement = (
        select(RescoreRun)
        .where(col(RescoreRun.finished_at).is_(None))
        .order_by(col(RescoreRun.icp_version).desc())
        .limit(1)
    )
    return (await session.exec(_locking(statement))).first()


async def rescore_chunk(
    *, session: AsyncSession, run: RescoreRun, icp: CompiledIcp, limit: int, now: datetime | None = None
) -> list[LeadScored]:
    """Re-score the run's next leads (keyset on lead id) and move its cursor; finish it when none are left.

    Open leads only: received since the run's window began, not yet an MQL, still in a scoring stage,
    and not already scored under the run's version (a lead that arrived after the activation).
    """
    now = now or utcnow()
    pending = _pending(run)
    if run.total is None:
        run.total = (await session.exec(select(func.count()).select_from(LeadScore).where(*pending))).one()
    statement = select(LeadScore).where(*pending).order_by(col(LeadScore.lead_id)).limit(limit)
    records = list((await session.exec(_locking(statement))).all())
    engagements = await _engagements(session, [record.lead_id for record in records])
    results = []
    for record in records:
        evaluation = icp.evaluate(record.facts, engagements.get(record.lead_id, []), now=now)
        results.append(_apply_to_record(session, record, icp, evaluation, ScoreTrigger.ICP_ACTIVATED, now))
    run.done += len(records)
    if records:
        run.cursor = records[-1].lead_id
    if len(records) < limit:
        run.finished_at = now
    session.add(run)
    return results


def _pending(run: RescoreRun) -> list[Any]:
    conditions = [
        col(LeadScore.received_at) >= run.received_since,
        col(LeadScore.mql).is_(False),
        col(LeadScore.stage).in_(SCORING_STAGES),
        col(LeadScore.icp_version) != str(run.icp_version),
    ]
    if run.cursor is not None:
        conditions.append(col(LeadScore.lead_id) > run.cursor)
    return conditions


def _apply(
    row: dict[str, Any],
    icp: CompiledIcp,
    evaluation: Evaluation,
    trigger: ScoreTrigger,
    now: datetime,
    *,
    lead: LeadReceived,
) -> LeadScored:
    """Put an evaluation in a lead's score row; the lead becomes an MQL the first time one says so, and stays one.

    Returns the lead.scored to publish.
    """
    row.update(
        score=evaluation.score,
        fit=evaluation.fit,
        engagement=evaluation.engagement,
        grade=evaluation.grade,
        icp_version=icp.version,
        disqualified=evaluation.disqualified,
        explanation=[criterion.model_dump(mode="json") for criterion in evaluation.criteria],
        scored_at=now,
    )
    became_mql = evaluation.mql and row["mql_at"] is None
    if became_mql:
        row.update(mql=True, mql_at=now, mql_reason=evaluation.mql_reason)
        if row["stage"] in SCORING_STAGES:  # leads already with sales keep their stage
            row["stage"] = LeadStage.MQL
    account = None
    if row["account_id"] is not None and row["match_method"] is not None:
        account = AccountMatch(
            account_id=row["account_id"],
            method=MatchMethod(row["match_method"]),
            confidence=row["match_confidence"] or 0.0,
            owner_rep_id=(row["facts"].get("account") or {}).get("owner_rep_id"),
        )
    return LeadScored(
        lead_id=row["lead_id"],
        score=row["score"],
        stage=row["stage"],
        icp_version=row["icp_version"],
        explanation=evaluation.criteria,
        scored_at=row["scored_at"],
        lead=lead,
        fit=row["fit"],
        engagement=row["engagement"],
        grade=row["grade"],
        mql=row["mql"],
        mql_reason=row["mql_reason"],
        became_mql=became_mql,
        disqualified=row["disqualified"],
        account=account,
        enriched_fields=list(row["enriched_fields"]),
        trigger=trigger,
    )


def _apply_to_record(
    session: AsyncSession,
    record: LeadScore,
    icp: CompiledIcp,
    evaluation: Evaluation,
    trigger: ScoreTrigger,
    now: datetime,
) -> LeadScored:
    """`_apply` to a stored score the session tracks (only the columns that change are updated)."""
    row = record.model_dump()
    scored = _apply(row, icp, evaluation, trigger, now, lead=LeadReceived.model_validate(record.lead))
    record.sqlmodel_update(row)
    session.add(record)
    return scored


# Built once: statements with their values inline would be compiled (and cache-keyed) anew per batch.
_MQL_STATE = ("lead_id", "stage", "mql", "mql_at", "mql_reason")
_MQL_STATES = (
    select(*(col(getattr(LeadScore, name)) for name in _MQL_STATE))
    .where(col(LeadScore.lead_id).in_(bindparam("ids", expanding=True)))
    .order_by(col(LeadScore.lead_id))
    .with_for_update()
)
_INSERT_SCORES = insert(LeadScore)
_UPDATE_SCORES = update(LeadScore).where(col(LeadScore.lead_id) == bindparam("scored_lead_id"))


async def _locked_mql_states(session: AsyncSession, lead_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The stage and MQL state of the leads scored before, locked as `_locked_scores` locks their scores."""
    ids = sorted(set(lead_ids))
    if not ids:
        return {}
    # Through the session, so changes it has not written yet (an earlier run of the batch) are flushed first.
    rows = await session.exec(_MQL_STATES, params={"ids": ids})
    return {row.lead_id: row._asdict() for row in rows}


async def _store(session: AsyncSession, rows: Mapping[str, dict[str, Any]], *, known: Container[str]) -> None:
    """Insert the score rows of new leads and update those of leads scored before: one statement each."""
    connection = await session.connection()
    new = [row for lead_id, row in rows.items() if lead_id not in known]
    if new:
        await connection.execute(_INSERT_SCORES, new)
    # The key goes by another name: a parameter named after a column is a value to set.
    again = [
        {"scored_lead_id": lead_id, **{name: value for name, value in row.items() if name != "lead_id"}}
        for lead_id, row in rows.items()
        if lead_id in known
    ]
    if again:
        await connection.execute(_UPDATE_SCORES, again)


async def _locked_scores(session: AsyncSession, lead_ids: Iterable[str]) -> dict[str, LeadScore]:
    ids = sorted(set(lead_ids))
    if not ids:
        return {}
    statement = select(LeadScore).where(col(LeadScore.lead_id).in_(ids)).order_by(col(LeadScore.lead_id))
    return {record.lead_id: record for record in (await session.exec(_locking(statement))).all()}


def _locking(statement: SelectOfScalar[T]) -> SelectOfScalar[T]:
    # FOR UPDATE on PostgreSQL (SQLite has one writer); rows already in the session are read afresh.
    return statement.with_for_update().execution_options(populate_existing=True)


_ENGAGEMENTS = (
    select(LeadEngagement.lead_id, LeadEngagement.activity, LeadEngagement.occurred_at)
    .where(col(LeadEngagement.lead_id).in_(bindparam("ids", expanding=True)))
    .order_by(col(LeadEngagement.occurred_at))
)


async def _engagements(session: AsyncSession, lead_ids: Sequence[str]) -> dict[str, list[Engagement]]:
    if not lead_ids:
        return {}
    grouped: dict[str, list[Engagement]] = defaultdict(list)
    for lead_id, activity, occurred_at in await session.exec(_ENGAGEMENTS, params={"ids": list(set(lead_ids))}):
        grouped[lead_id].append(Engagement(activity=ActivityType(activity), occurred_at=occurred_at))
    return grouped


async def _store_engagements(session: AsyncSession, engagements: Sequence[tuple[str, LeadActivity]]) -> list[str]:
    """Store engagements not stored before (keyed by event id); the leads that have a new one, in order."""
    wanted = dict(engagements)
    if not wanted:
        return []
    statement = select(LeadEngagement.event_id).where(col(LeadEngagement.event_id).in_(list(wanted)))
    seen = set((await session.exec(statement)).all())
    rows = [
        {
            "event_id": event_id,
            "lead_id": activity.lead_id,
            "activity": activity.activity.value,
            "occurred_at": activity.occurred_at,
        }
        for event_id, activity in wanted.items()
        if event_id not in seen
    ]
    if rows:
        await (await session.connection()).execute(insert(LeadEngagement), rows)
    return list(dict.fromkeys(str(row["lead_id"]) for row in rows))
