"""Placeholder ICP scoring; the ICP-agreement issue replaces `evaluate` with versioned, signed criteria."""

from collections.abc import Sequence

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.events import LeadReceived, ScoreCriterion, utcnow
from leadrelay.stages import LeadStage
from scoring.scores.models import LeadScore

PLACEHOLDER_ICP_VERSION = "placeholder-1"
FREE_MAIL_DOMAINS = frozenset(
    {"gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "icloud.com", "aol.com", "proton.me"}
)


def evaluate(lead: LeadReceived) -> list[ScoreCriterion]:
    """Points per criterion of the placeholder ICP."""
    domain = lead.email.rsplit("@", 1)[-1].lower()
    business_email = domain not in FREE_MAIL_DOMAINS
    return [
        ScoreCriterion(
            criterion="business_email",
            points=30 if business_email else 0,
            reason="email on a company domain" if business_email else "free-mail domain",
        ),
        ScoreCriterion(
            criterion="company_known",
            points=30 if lead.company else 0,
            reason="company given" if lead.company else "no company",
        ),
        ScoreCriterion(
            criterion="job_title_known",
            points=20 if lead.job_title else 0,
            reason="job title given" if lead.job_title else "no job title",
        ),
        ScoreCriterion(
            criterion="reachable_by_phone",
            points=20 if lead.phone else 0,
            reason="phone given" if lead.phone else "no phone",
        ),
    ]


async def score(*, session: AsyncSession, lead: LeadReceived, mql_threshold: int) -> LeadScore:
    """Score a lead and store the result (a re-driven lead is simply scored again)."""
    (record,) = await score_many(session=session, leads=[lead], mql_threshold=mql_threshold)
    return record


async def score_many(*, session: AsyncSession, leads: Sequence[LeadReceived], mql_threshold: int) -> list[LeadScore]:
    """Score leads and store the results, reading the stored scores in one query; one result per lead, in order."""
    ids = list({lead.lead_id for lead in leads})
    stored = {
        record.lead_id: record
        for record in (await session.exec(select(LeadScore).where(col(LeadScore.lead_id).in_(ids)))).all()
    }
    records = []
    for lead in leads:
        explanation = evaluate(lead)
        total = min(sum(criterion.points for criterion in explanation), 100)
        stage = LeadStage.MQL if total >= mql_threshold else LeadStage.LEAD
        record = stored.get(lead.lead_id) or LeadScore(
            lead_id=lead.lead_id, score=total, stage=stage, icp_version=PLACEHOLDER_ICP_VERSION
        )
        stored[lead.lead_id] = record  # the same lead twice in a run: one row
        record.score, record.stage, record.icp_version = total, stage, PLACEHOLDER_ICP_VERSION
        record.explanation = [criterion.model_dump() for criterion in explanation]
        record.scored_at = utcnow()
        session.add(record)
        records.append(record)
    return records
