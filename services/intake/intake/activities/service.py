"""Activity logic: move a lead through the lifecycle state machine, record it, announce it."""

from typing import Any
from uuid import UUID

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from intake.activities.schemas import ActivityCreate, ActivityPublic
from intake.leads import service as leads
from intake.leads.models import Lead, TimelineEntry
from leadrelay import db, idempotency_keys, outbox
from leadrelay.events import LeadActivity, new_event, utcnow
from leadrelay.idempotency_keys import Answer, IdempotentRequest
from leadrelay.stages import next_stage

SOURCE = "leadrelay/intake"


class LeadNotFound(LookupError):
    """No lead has this id."""


async def _locked_lead(session: AsyncSession, lead_id: str) -> Lead | None:
    try:
        UUID(lead_id)
    except ValueError:
        return None  # ids are UUIDs: anything else cannot name a lead
    # The lock (a row lock on PostgreSQL, the writer lock on SQLite) makes two activities on one lead
    # take turns: the second sees the stage the first left, and the external ids it recorded.
    await db.begin_writing(session, Lead)
    statement = select(Lead).where(Lead.id == lead_id).with_for_update().execution_options(populate_existing=True)
    return (await session.exec(statement)).first()


async def _recorded(session: AsyncSession, *, lead_id: str, external_id: str) -> ActivityPublic | None:
    """The activity already recorded on the lead under the sender's id, if any (a lead has few activities)."""
    statement = select(TimelineEntry).where(
        col(TimelineEntry.lead_id) == lead_id, col(TimelineEntry.type) == LeadActivity.event_type
    )
    for entry in (await session.exec(statement)).all():
        details = entry.details
        if details.get("external_id") == external_id:
            return ActivityPublic(
                id=entry.event_id,
                lead_id=lead_id,
                type=details["activity"],
                reason=details.get("reason"),
                channel=details.get("channel"),
                rep_id=details.get("rep_id"),
                occurred_at=details["occurred_at"],
                previous_stage=details["previous_stage"],
                stage=details["stage"],
                recorded_at=details.get("recorded_at") or entry.occurred_at,
                external_id=external_id,
            )
    return None


async def _stage_activity(session: AsyncSession, *, lead_id: str, activity_in: ActivityCreate) -> Answer:
    lead = await _locked_lead(session, lead_id)
    if lead is None:
        raise LeadNotFound(lead_id)
    if activity_in.external_id is not None:
        known = await _recorded(session, lead_id=lead.id, external_id=activity_in.external_id)
        if known is not None:
            return Answer(status_code=200, body=known.model_dump(mode="json"))
    previous = lead.stage
    stage = next_stage(previous, activity_in.type)
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
    details: dict[str, Any] = {
        "activity": activity_in.type.value,
        "reason": activity_in.reason,
        "channel": activity_in.channel,
        "rep_id": activity_in.rep_id,
        "occurred_at": event.data.occurred_at.isoformat(),
        "previous_stage": previous.value,
        "stage": stage.value,
        "recorded_at": recorded_at.isoformat(),
    }
    if activity_in.external_id is not None:
        details["external_id"] = activity_in.external_id
    leads.add_timeline(session, lead_id=lead.id, event=event, details=details)
    outbox.add(session, event)
    activity = ActivityPublic(
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
        external_id=activity_in.external_id,
    )
    return Answer(status_code=201, body=activity.model_dump(mode="json"))


async def record(
    *, session: AsyncSession, lead_id: str, activity_in: ActivityCreate, idempotency: IdempotentRequest | None = None
) -> Answer:
    """Apply an activity to a lead's stage, append it to the timeline and publish lead.activity, in one transaction.

    201 with the activity; 200 with the first one when its `external_id` was already recorded on the
    lead; a retry with the same Idempotency-Key repeats the first answer. Raises LeadNotFound, or
    InvalidTransition when the lead's stage does not allow it: nothing stored.
    """
    try:
        answer = await idempotency_keys.answer_once(
            session,
            request=idempotency,
            work=lambda session: _stage_activity(session, lead_id=lead_id, activity_in=activity_in),
        )
    except BaseException:
        await session.rollback()
        raise
    await session.commit()
    return answer
