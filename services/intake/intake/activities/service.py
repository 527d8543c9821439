"""Activity logic: move a lead through the lifecycle state machine, record it, announce it."""

from uuid import UUID

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from intake.activities.schemas import ActivityCreate, ActivityPublic
from intake.leads import service as leads
from intake.leads.models import Lead
from leadrelay import outbox
from leadrelay.events import LeadActivity, new_event, utcnow
from leadrelay.stages import next_stage

SOURCE = "leadrelay/intake"


class LeadNotFound(LookupError):
    """No lead has this id."""


async def _locked_lead(session: AsyncSession, lead_id: str) -> Lead | None:
    try:
        UUID(lead_id)
    except ValueError:
        return None  # ids are UUIDs: anything else cannot name a lead
    # The row lock (PostgreSQL) makes two activities on one lead take turns: the second sees the
    # stage the first left. SQLite has one writer at a time, and one connection per process.
    statement = select(Lead).where(Lead.id == lead_id).with_for_update().execution_options(populate_existing=True)
    return (await session.exec(statement)).first()


async def record(*, session: AsyncSession, lead_id: str, activity_in: ActivityCreate) -> ActivityPublic:
    """Apply an activity to a lead's stage, append it to the timeline and publish lead.activity, in one transaction.

    Raises LeadNotFound, or InvalidTransition (nothing stored) when the lead's stage does not allow it.
    """
    lead = await _locked_lead(session, lead_id)
    if lead is None:
        await session.rollback()
        raise LeadNotFound(lead_id)
    previous = lead.stage
    try:
        stage = next_stage(previous, activity_in.type)
    except ValueError:
        await session.rollback()
        raise
    recorded_at = utcnow()
    event = new_event(
        LeadActivity(
            lead_id=lead.id,
            rep_id=activity_in.rep_id or "",
            activity=activity_in.type,
            reason_code=activity_in.reason,
            occurred_at=activity_in.occurred_at or recorded_at,
            channel=activity_in.channel,
            previous_stage=previous,
            stage=stage,
            recorded_at=recorded_at,
        ),
        source=SOURCE,
    )
    lead.stage, lead.updated_at = stage, recorded_at
    session.add(lead)
    leads.add_timeline(
        session,
        lead_id=lead.id,
        event=event,
        details={
            "activity": activity_in.type.value,
            "reason": activity_in.reason,
            "channel": activity_in.channel,
            "rep_id": activity_in.rep_id,
            "occurred_at": event.data.occurred_at.isoformat(),
            "previous_stage": previous.value,
            "stage": stage.value,
        },
    )
    outbox.add(session, event)
    await session.commit()
    return ActivityPublic(
        id=event.id,
        lead_id=lead.id,
        type=activity_in.type,
        reason=activity_in.reason,
        channel=activity_in.channel,
        rep_id=activity_in.rep_id,
        occurred_at=event.data.occurred_at,
        previous_stage=previous,
        stage=stage,
        recorded_at=recorded_at,
    )
