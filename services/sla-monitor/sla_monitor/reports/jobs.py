"""Leader job: recount the open-obligations and at-risk gauges."""

from leadrelay.runtime import ServiceRuntime
from leadrelay.service import Job
from sla_monitor.config import SlaMonitorSettings
from sla_monitor.context import SlaContext


def gauge_job(context: SlaContext) -> Job[SlaMonitorSettings]:
    """Every SLA_GAUGE_INTERVAL_SECONDS, set the gauges from the open timers."""

    async def refresh_sla_gauges(runtime: ServiceRuntime[SlaMonitorSettings]) -> None:
        return  # issue 10: reports helper

    return refresh_sla_gauges
