"""Scheduled job: breach timers whose deadline passed."""

import asyncio

from leadrelay.events import utcnow
from leadrelay.runtime import ServiceRuntime
from sla_monitor.config import SlaMonitorSettings
from sla_monitor.timers import service


async def breach_due_timers(runtime: ServiceRuntime[SlaMonitorSettings]) -> None:
    """Every check interval, close due timers as breached and publish sla.breached (with SLA_BREACH_ESCALATION)."""
    while True:
        async with runtime.sessions() as session:
            breached = await service.breach_due(
                session=session, now=utcnow(), escalation=runtime.settings.sla_breach_escalation
            )
            await session.commit()
        if breached:
            continue  # there may be more due right now
        await asyncio.sleep(runtime.settings.timer_check_interval_seconds)
