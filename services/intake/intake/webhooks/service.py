"""Accept a verified delivery once: its leads and its replay record in one transaction."""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from intake.leads import service as leads
from intake.leads.schemas import LeadCreate
from intake.webhooks.models import WebhookDelivery
from leadrelay.events import utcnow

REPLAY_WINDOW = timedelta(hours=72)


@dataclass(frozen=True)
class Accepted:
    """The leads a delivery made; `replay` when an earlier delivery already made them."""

    lead_ids: list[str]
    replay: bool


def delivery_key(delivery_id: str) -> str:
    """The key the replay store holds: the id itself when short, else its SHA-256."""
    return delivery_id if len(delivery_id) <= 128 else hashlib.sha256(delivery_id.encode()).hexdigest()


async def accept(
    session: AsyncSession, *, source: str, delivery_id: str, leads_in: Sequence[LeadCreate], now: datetime | None = None
) -> Accepted:
    """Store every lead of a delivery with its replay record and commit; a replay within 72 hours stores nothing."""
    now = now or utcnow()
    key = delivery_key(delivery_id)
    seen = await _accepted(session, source=source, key=key)
    if seen is not None and seen.accepted_at > now - REPLAY_WINDOW:
        return Accepted(lead_ids=list(seen.lead_ids), replay=True)
    if seen is not None:  # older than the window: the sender may deliver it again
        await session.delete(seen)
        await session.flush()
    lead_ids = await leads.accept_many(session, leads_in=leads_in)
    session.add(WebhookDelivery(source=source, delivery_key=key, lead_ids=lead_ids, accepted_at=now))
    try:
        await session.commit()
    except IntegrityError:
        # The same delivery arrived twice at once and the other copy committed first: answer its leads.
        await session.rollback()
        winner = await _accepted(session, source=source, key=key)
        if winner is None:
            raise
        return Accepted(lead_ids=list(winner.lead_ids), replay=True)
    return Accepted(lead_ids=lead_ids, replay=False)


async def _accepted(session: AsyncSession, *, source: str, key: str) -> WebhookDelivery | None:
    query = select(WebhookDelivery).where(WebhookDelivery.source == source, WebhookDelivery.delivery_key == key)
    return (await session.exec(query.execution_options(populate_existing=True))).first()


async def prune(session: AsyncSession, *, now: datetime | None = None) -> int:
    """Forget deliveries older than the replay window; commit; returns how many."""
    cutoff = (now or utcnow()) - REPLAY_WINDOW
    result = await session.exec(delete(WebhookDelivery).where(col(WebhookDelivery.accepted_at) <= cutoff))
    await session.commit()
    return int(result.rowcount or 0)
