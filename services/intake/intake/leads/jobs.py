"""Scheduled jobs: re-drive leads whose lead.received the broker lost."""

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta

from aiokafka.errors import KafkaError

from intake.config import IntakeSettings
from intake.leads import service
from intake.leads.models import Lead
from leadrelay.events import utcnow
from leadrelay.runtime import ServiceRuntime

logger = logging.getLogger(__name__)

BATCH = 500


async def redrive_lost_leads(runtime: ServiceRuntime[IntakeSettings]) -> None:
    """Re-publish lead.received for in-flight leads the broker lost, and only those.

    Two ways to know a lead was lost: the broker lost its data while the lead was in flight (the
    broker watch says when; any hop may have dropped it), or the broker no longer holds the lead's
    lead.received where it said it stored it (checked for leads in flight longer than
    REDRIVE_AFTER_SECONDS, and at start for everything in flight). A lead that is merely queued
    behind a burst is still in the log, so it is never re-published.
    """
    settings = runtime.settings
    losses: list[datetime] = []
    woken = asyncio.Event()

    def on_loss(lost_at: datetime) -> None:
        losses.append(lost_at)
        woken.set()

    # At start (or on taking over as leader), everything in flight is checked: checking never
    # re-publishes what the broker still holds, so a takeover cannot cause a storm.
    cutoff = utcnow()
    with runtime.watch.listening(on_loss):
        while True:
            while losses:
                await _redrive_published_before(runtime, losses.pop(0), reason="the broker lost its data")
            try:
                await _redrive_missing(runtime, published_before=cutoff)
            except (KafkaError, OSError, TimeoutError) as exc:
                logger.warning("could not check the broker for lost leads, will retry", extra={"error": repr(exc)})
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(settings.redrive_check_interval_seconds):
                    await woken.wait()
            woken.clear()
            cutoff = utcnow() - timedelta(seconds=settings.redrive_after_seconds)


async def _redrive_published_before(runtime: ServiceRuntime[IntakeSettings], lost_at: datetime, *, reason: str) -> None:
    total = 0
    while True:
        async with runtime.sessions() as session:
            leads = await service.published_in_flight(session=session, published_before=lost_at, limit=BATCH)
            count = await service.redrive(
                session=session,
                lead_ids=[lead.id for lead in leads],
                max_attempts=runtime.settings.redrive_max_attempts,
            )
        total += count
        if len(leads) < BATCH or count == 0:
            break
    if total:
        runtime.metrics.leads_redriven_total.labels("broker_lost_data").inc(total)
        logger.warning("re-drove in-flight leads", extra={"count": total, "reason": reason})


async def _redrive_missing(runtime: ServiceRuntime[IntakeSettings], *, published_before: datetime) -> None:
    after: Lead | None = None
    total = 0
    while True:
        async with runtime.sessions() as session:
            leads = await service.published_in_flight(
                session=session, published_before=published_before, after=after, limit=BATCH
            )
        if not leads:
            break
        positions = service.log_positions(leads)
        # After a loss, look the way a consumer that started over reads: from the start of the log.
        still_there = await runtime.bus.still_stored(positions, from_log_start=runtime.watch.losses > 0)
        runtime.metrics.leads_checked_in_broker_total.inc(len(positions))
        lost = [position.event_id for position in positions if position.event_id not in still_there]
        if lost:
            lost_ids = [lead.id for lead in leads if lead.received_event_id in set(lost)]
            async with runtime.sessions() as session:
                total += await service.redrive(
                    session=session, lead_ids=lost_ids, max_attempts=runtime.settings.redrive_max_attempts
                )
        if len(leads) < BATCH:
            break
        after = leads[-1]
    if total:
        runtime.metrics.leads_redriven_total.labels("not_in_broker").inc(total)
        logger.warning("re-drove leads the broker no longer holds", extra={"count": total})
