"""Scheduled job: re-drive leads that have not reached a routing decision."""

import asyncio
import logging
from datetime import timedelta

from intake.config import IntakeSettings
from intake.leads import service
from leadrelay.events import utcnow
from leadrelay.service import ServiceRuntime

logger = logging.getLogger(__name__)

# The job runs on one leader, which may take over long after it started: the leads accepted since
# then (by any process) are not suspect, only those from before it existed.
_PROCESS_STARTED = utcnow()


async def redrive_stuck_leads(runtime: ServiceRuntime) -> None:
    """At start, re-drive every lead still in flight; then, those in flight for too long."""
    settings = runtime.settings
    assert isinstance(settings, IntakeSettings)
    cutoff = _PROCESS_STARTED  # at start: everything accepted before this process existed
    while True:
        while True:
            async with runtime.sessions() as session:
                count = await service.redrive_in_flight(
                    session=session, published_before=cutoff, max_attempts=settings.redrive_max_attempts
                )
            if count:
                logger.info("re-drove leads without a routing decision", extra={"count": count})
                runtime.relay.wake()
            if count < 500:
                break
        await asyncio.sleep(settings.redrive_check_interval_seconds)
        cutoff = utcnow() - timedelta(seconds=settings.redrive_after_seconds)
