"""Events scoring consumes."""

from functools import partial

from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay import outbox
from leadrelay.consumer import Handlers
from leadrelay.events import CloudEvent, LeadReceived, LeadScored, ScoreCriterion, new_event
from scoring.config import ScoringSettings
from scoring.scores import service

SOURCE = "leadrelay/scoring"


async def on_lead_received(event: CloudEvent[LeadReceived], session: AsyncSession, *, mql_threshold: int) -> None:
    """Score the lead and publish lead.scored with its explanation."""
    record = await service.score(session=session, lead=event.data, mql_threshold=mql_threshold)
    scored = LeadScored(
        lead_id=record.lead_id,
        score=record.score,
        stage=record.stage,
        icp_version=record.icp_version,
        explanation=[ScoreCriterion.model_validate(item) for item in record.explanation],
        scored_at=record.scored_at,
        lead=event.data,
    )
    outbox.add(session, new_event(scored, source=SOURCE))


def handlers(settings: ScoringSettings) -> Handlers:
    """Message type to handler, bound to this process's settings."""
    return Handlers().on(LeadReceived, partial(on_lead_received, mql_threshold=settings.mql_threshold))
