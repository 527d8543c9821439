"""Scheduled jobs: re-score open leads after a new ICP version became active."""

import asyncio
import contextlib
import logging

from leadrelay.db import after_commit
from leadrelay.runtime import ServiceRuntime
from leadrelay.service import Job
from scoring.config import ScoringSettings
from scoring.scores import service
from scoring.scores.handlers import ScoringContext, publish

logger = logging.getLogger(__name__)


def rescore_job(context: ScoringContext) -> Job[ScoringSettings]:
    """The re-scoring job bound to this process's context (it runs on one leader among the replicas)."""

    async def rescore_after_activation(runtime: ServiceRuntime[ScoringSettings]) -> None:
        """Work through the newest unfinished run chunk by chunk, one transaction each; wait for the next."""
        while True:
            if not await rescore_next_chunk(runtime, context):
                context.metrics.rescore_leads_remaining.set(0)
                with contextlib.suppress(TimeoutError):
                    # Woken at once by an activation handled here; another replica's is seen at the next poll.
                    async with asyncio.timeout(runtime.settings.rescore_poll_interval_seconds):
                        await context.rescore_wanted.wait()
                context.rescore_wanted.clear()

    return rescore_after_activation


async def rescore_next_chunk(runtime: ServiceRuntime[ScoringSettings], context: ScoringContext) -> bool:
    """Re-score the next chunk of the current run; False when there is no unfinished run."""
    async with runtime.sessions() as session, session.begin():
        run = await service.current_run(session)
        if run is None:
            return False
        icp = await context.icps.version(session, run.icp_version)
        scored = await service.rescore_chunk(session=session, run=run, icp=icp, limit=runtime.settings.rescore_chunk)
        publish(session, context, scored)
        version, done, total, finished = run.icp_version, run.done, run.total or 0, run.finished_at is not None
        became = sum(1 for item in scored if item.became_mql)

        def progress() -> None:
            context.metrics.leads_rescored_total.inc(len(scored))
            context.metrics.rescore_leads_remaining.set(0 if finished else max(total - done, 0))

        after_commit(session, progress)
    logger.info(
        "re-scored a chunk of open leads",
        extra={"icp_version": version, "chunk": len(scored), "new_mqls": became, "done": done, "total": total},
    )
    if finished:
        logger.info("re-scoring finished", extra={"icp_version": version, "done": done, "total": total})
    return True
