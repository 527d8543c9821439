"""Scheduled job: fire timers whose warning or deadline has come."""

import asyncio

from leadrelay.events import utcnow
from leadrelay.runtime import ServiceRuntime
from leadrelay.service import Job
from sla_monitor.config import SlaMonitorSettings
from sla_monitor.context import SlaContext
from sla_monitor.timers import service


def timer_job(context: SlaContext) -> Job[SlaMonitorSettings]:
    """The job firing due timers (one leader among the replicas)."""

    async def fire_due_timers(runtime: ServiceRuntime[SlaMonitorSettings]) -> None:
        """Close due timers as breached and publish sla.breached (placeholder: issue 10 sleeps until the next one)."""
        while True:
            async with runtime.sessions() as session:
                breached = await service.breach_due(
                    session=session, now=utcnow(), escalation=runtime.settings.sla_breach_escalation
                )
                await session.commit()
            if breached:
                continue  # there may be more due right now
            await asyncio.sleep(min(runtime.settings.timer_max_sleep_seconds, 0.2))

    return fire_due_timers
