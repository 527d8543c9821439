"""Events scoring consumes."""

from collections.abc import Sequence
from functools import partial

from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay import outbox
from leadrelay.consumer import Handlers
from leadrelay.events import CloudEvent, LeadReceived, LeadScored, ScoreCriterion, new_event
from scoring.config import ScoringSettings
from scoring.scores import service

SOURCE = "leadrelay/scoring"


async def on_lead_received(
    events: Sequence[CloudEvent[LeadReceived]], session: AsyncSession, *, mql_threshold: int
) -> None:
    """Score the leads and publish lead.scored for each, with its explanation."""
    leads = [event.data for event in events]
    records = await service.score_many(session=session, leads=leads, mql_threshold=mql_threshold)
    for lead, record in zip(leads, records, strict=True):
        scored = LeadScored(
            lead_id=record.lead_id,
            score=record.score,
            stage=record.stage,
            icp_version=record.icp_version,
            explanation=[ScoreCriterion.model_validate(item) for item in record.explanation],
            scored_at=record.scored_at,
            lead=lead,
        )
        outbox.add(session, new_event(scored, source=SOURCE))


def handlers(settings: ScoringSettings) -> Handlers:
    """Message type to handler, bound to this process's settings; a run of leads is scored at once."""
    return Handlers().on_batch(LeadReceived, partial(on_lead_received, mql_threshold=settings.mql_threshold))
