"""Scheduled job: breach timers whose deadline passed."""

import asyncio

from leadrelay import outbox
from leadrelay.events import SlaBreached, new_event, utcnow
from leadrelay.service import ServiceRuntime
from sla_monitor.timers import service
from sla_monitor.timers.handlers import SOURCE


async def breach_due_timers(runtime: ServiceRuntime) -> None:
    """Every check interval, close due timers as breached and publish sla.breached."""
    interval = getattr(runtime.settings, "timer_check_interval_seconds", 1.0)
    while True:
        async with runtime.sessions() as session:
            now = utcnow()
            timers = await service.claim_due(session=session, now=now)
            for timer in timers:
                timer.status, timer.closed_at = "breached", now
                session.add(timer)
                breached = SlaBreached(
                    lead_id=timer.lead_id,
                    obligation=timer.obligation,
                    assignment_id=timer.assignment_id,
                    rep_id=timer.rep_id,
                    due_at=timer.due_at,
                    breached_at=now,
                )
                outbox.add(session, new_event(breached, source=SOURCE))
            await session.commit()
        if timers:
            runtime.relay.wake()
            continue  # there may be more due right now
        await asyncio.sleep(interval)
