"""Events scoring consumes: leads, their activity, accounts, and the activation of a new ICP version."""

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay import outbox
from leadrelay.consumer import Handlers
from leadrelay.db import after_commit
from leadrelay.events import (
    AccountChanged,
    AgreementActivated,
    CloudEvent,
    LeadActivity,
    LeadReceived,
    LeadScored,
    new_event,
)
from scoring.accounts.handlers import on_account_changed
from scoring.config import ScoringSettings
from scoring.scores import service
from scoring.scores.metrics import ScoringMetrics

SOURCE = "leadrelay/scoring"

logger = logging.getLogger(__name__)


@dataclass
class ScoringContext:
    """What scoring's handlers and jobs share in one process: settings, compiled ICPs, metrics."""

    settings: ScoringSettings
    metrics: ScoringMetrics
    icps: service.IcpVersions = field(default_factory=service.IcpVersions)
    rescore_wanted: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once an activation's run is committed, so this process's re-scoring job starts at once."""


def publish(session: AsyncSession, context: ScoringContext, scored: Sequence[LeadScored]) -> None:
    """Stage each lead.scored and count them once committed."""
    outbox.add(session, *(new_event(data, source=SOURCE) for data in scored))

    def count() -> None:
        for data in scored:
            context.metrics.scored(grade=data.grade, mql=data.mql, became_mql=data.became_mql, source=data.lead.source)

    if scored:
        after_commit(session, count)


async def on_lead_received(
    events: Sequence[CloudEvent[LeadReceived]], session: AsyncSession, *, context: ScoringContext
) -> None:
    """Match, enrich and score the leads under the active ICP; publish lead.scored for each."""
    icp = await context.icps.active(session)
    scored, matches = await service.score_received(
        session=session,
        leads=[e.data for e in events],
        icp=icp,
        fuzzy_threshold=context.settings.account_fuzzy_match_threshold,
    )
    publish(session, context, scored)

    def count_matches() -> None:
        for match in matches:
            context.metrics.matched(match)

    after_commit(session, count_matches)


async def on_lead_activity(
    events: Sequence[CloudEvent[LeadActivity]], session: AsyncSession, *, context: ScoringContext
) -> None:
    """Keep engagements and rep stages; re-score each engaged lead once and publish its lead.scored."""
    icp = await context.icps.active(session)
    activities = [(e.id, e.data) for e in events]
    publish(session, context, await service.record_activities(session=session, activities=activities, icp=icp))


async def on_agreement_activated(
    events: Sequence[CloudEvent[AgreementActivated]], session: AsyncSession, *, context: ScoringContext
) -> None:
    """Record a re-scoring run when a new ICP version becomes active (other kinds are another service's)."""
    versions = [e.data.version for e in events if e.data.kind == service.ICP_KIND]
    if not versions:
        return
    version = max(versions)  # the newest supersedes the others of the batch anyway
    run = await service.start_rescore_run(session=session, icp_version=version, days=context.settings.rescore_days)
    if run is not None:
        logger.info("ICP version activated, re-scoring open leads", extra={"icp_version": version})
        after_commit(session, context.rescore_wanted.set)


def handlers(context: ScoringContext) -> Handlers:
    """Message type to handler, bound to this process's context; runs of events are handled at once."""
    return (
        Handlers()
        .on_batch(LeadReceived, partial(on_lead_received, context=context))
        .on_batch(LeadActivity, partial(on_lead_activity, context=context))
        .on_batch(AccountChanged, on_account_changed)
        .on_batch(AgreementActivated, partial(on_agreement_activated, context=context))
    )
