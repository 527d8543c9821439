"""Scheduled job: announce every key again, so no service keeps missing a key change."""

import asyncio
import contextlib
import logging
from datetime import datetime

from intake.config import IntakeSettings
from intake.keys import service
from leadrelay.runtime import ServiceRuntime

logger = logging.getLogger(__name__)


async def announce_keys(runtime: ServiceRuntime[IntakeSettings]) -> None:
    """Re-announce the whole registry at start, after the broker lost its data, and periodically.

    A broker that lost its data lost the announcements other services had not read yet; a topic
    past its retention no longer holds old keys for a service that starts with an empty database.
    Re-announcing is cheap (keys are few) and changes nothing where a service is up to date.
    """
    woken = asyncio.Event()

    def on_loss(_lost_at: datetime) -> None:
        woken.set()

    with runtime.watch.listening(on_loss):
        while True:
            async with runtime.sessions() as session:
                count = await service.announce_all(session)
            logger.info("announced the key registry", extra={"count": count})
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(runtime.settings.key_announce_interval_seconds):
                    await woken.wait()
            woken.clear()
