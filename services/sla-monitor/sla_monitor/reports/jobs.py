"""Leader job: recount the open-obligations and at-risk gauges."""

import asyncio
from dataclasses import dataclass, field

from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.runtime import ServiceRuntime
from leadrelay.service import Job
from sla_monitor.config import SlaMonitorSettings
from sla_monitor.context import SlaContext
from sla_monitor.metrics import NONE, SlaMetrics
from sla_monitor.policy.service import Policies
from sla_monitor.reports import service


@dataclass
class SlaGauges:
    """Sets the gauges from grouped counts; a label set seen before and absent now goes back to 0.

    Every known team reads 0 at risk, and 0 open for each obligation of the policy in force, before
    its first timer: a panel or an alert then sees a team with nothing open, not no data.
    """

    metrics: SlaMetrics
    policies: Policies
    _open_seen: set[tuple[str, str]] = field(default_factory=set)
    _at_risk_seen: set[str] = field(default_factory=set)

    async def refresh(self, session: AsyncSession) -> None:
        """Recount open and warned timers and set both gauges."""
        open_now = {
            (team or NONE, obligation): count
            for (team, obligation), count in (await service.open_counts(session=session)).items()
        }
        at_risk_now = {team or NONE: count for team, count in (await service.warned_counts(session=session)).items()}
        teams = await service.known_teams(session=session)
        obligations = [obligation.name for obligation in (await self.policies.active(session)).document.obligations]
        for team in teams:
            at_risk_now.setdefault(team, 0)
            for obligation in obligations:
                open_now.setdefault((team, obligation), 0)
        for team, obligation in self._open_seen - open_now.keys():
            self.metrics.open_obligations.labels(team, obligation).set(0)
        for (team, obligation), count in open_now.items():
            self.metrics.open_obligations.labels(team, obligation).set(count)
        for team in self._at_risk_seen - at_risk_now.keys():
            self.metrics.at_risk.labels(team).set(0)
        for team, count in at_risk_now.items():
            self.metrics.at_risk.labels(team).set(count)
        self._open_seen |= open_now.keys()
        self._at_risk_seen |= at_risk_now.keys()

    def forget(self) -> None:
        """Drop every series: a process that stops leading must not keep exporting counts it no longer refreshes."""
        self.metrics.open_obligations.clear()
        self.metrics.at_risk.clear()
        self._open_seen.clear()
        self._at_risk_seen.clear()


def gauge_job(context: SlaContext) -> Job[SlaMonitorSettings]:
    """Every SLA_GAUGE_INTERVAL_SECONDS, set the gauges from the open timers."""
    gauges = SlaGauges(context.metrics, context.policies)

    async def refresh_sla_gauges(runtime: ServiceRuntime[SlaMonitorSettings]) -> None:
        """Recount the gauges until cancelled (leadership lost or shutdown), then drop them."""
        try:
            while True:
                async with runtime.sessions() as session:
                    await gauges.refresh(session)
                await asyncio.sleep(runtime.settings.sla_gauge_interval_seconds)
        finally:
            gauges.forget()

    return refresh_sla_gauges
