"""Scheduled job: forget accepted deliveries once they are past the replay window."""

import asyncio
import logging

from intake.config import IntakeSettings
from intake.webhooks import service
from leadrelay.runtime import ServiceRuntime

logger = logging.getLogger(__name__)


async def prune_webhook_deliveries(runtime: ServiceRuntime[IntakeSettings]) -> None:
    """Every WEBHOOK_PRUNE_INTERVAL_SECONDS, delete replay records older than 72 hours.

    Only keeps the table small: the replay check itself ignores records past the window.
    """
    while True:
        async with runtime.sessions() as session:
            pruned = await service.prune(session)
        if pruned:
            logger.info("pruned webhook deliveries", extra={"count": pruned})
        await asyncio.sleep(runtime.settings.webhook_prune_interval_seconds)
