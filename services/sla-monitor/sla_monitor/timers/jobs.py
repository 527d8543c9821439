"""Scheduled job: fire timers whose warning or deadline has come, sleeping until the next one."""

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from leadrelay.db import SessionFactory
from leadrelay.events import utcnow
from leadrelay.outbox import listening
from leadrelay.runtime import ServiceRuntime
from leadrelay.service import Job
from sla_monitor.config import SlaMonitorSettings
from sla_monitor.context import SlaContext
from sla_monitor.timers import service
from sla_monitor.timers.handlers import calendars, count_after_commit
from sla_monitor.timers.service import Changes
from sla_monitor.timers.wake import TIMERS_CHANNEL


async def fire_once(*, sessions: SessionFactory, context: SlaContext, now: datetime) -> tuple[int, datetime | None]:
    """Fire up to TIMER_FIRE_BATCH timers due at `now` in one transaction; how many, and the next instant after."""
    async with sessions() as session:
        changes = Changes()
        fired = await service.fire_due(
            session=session,
            now=now,
            limit=context.settings.timer_fire_batch,
            calendar_of=calendars(context, session),
            changes=changes,
        )
        # The job's own instants need no wake: it reads the next one here, its changes flushed.
        changes.soonest = None
        upcoming = await service.next_instant(session=session)
        count_after_commit(context, session, changes)
        await session.commit()
    return fired, upcoming


async def run_timers(*, sessions: SessionFactory, context: SlaContext, engine: AsyncEngine | None = None) -> None:
    """Fire due timers until cancelled: never before their instant; between batches, sleep until the next one.

    With `engine` on PostgreSQL, a timer any replica commits that may need firing before this job's
    longest sleep ends wakes it too (LISTEN).
    """
    async with listening(engine, context.wake.wake, channel=TIMERS_CHANNEL):
        await _fire_until_cancelled(sessions=sessions, context=context)


async def _fire_until_cancelled(*, sessions: SessionFactory, context: SlaContext) -> None:
    wake, max_sleep = context.wake, context.settings.timer_max_sleep_seconds
    while True:
        fired, upcoming = await fire_once(sessions=sessions, context=context, now=utcnow())
        if fired >= context.settings.timer_fire_batch:
            continue  # more may be due right now
        # Bounded: on SQLite, timers another process started wake no one here.
        delay = max_sleep
        if upcoming is not None:
            delay = min(delay, (upcoming - utcnow()).total_seconds())
        wake.planned = upcoming
        await wake.wait(delay)


def timer_job(context: SlaContext) -> Job[SlaMonitorSettings]:
    """The job firing due timers (one leader among the replicas)."""

    async def fire_due_timers(runtime: ServiceRuntime[SlaMonitorSettings]) -> None:
        """Warn and breach timers as their instants come, until cancelled."""
        await run_timers(sessions=runtime.sessions, context=context, engine=runtime.engine)

    return fire_due_timers
