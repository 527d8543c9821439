"""What the sla-monitor's handlers, jobs and routes share in one process: settings, policies, clocks, metrics."""

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from prometheus_client import CollectorRegistry

from sla_monitor.clocks.service import Clocks
from sla_monitor.config import SlaMonitorSettings
from sla_monitor.metrics import SlaMetrics
from sla_monitor.policy.service import Policies, builtin_policy
from sla_monitor.timers.wake import TimerWake


@dataclass
class SlaContext:
    """Created once per app in `create_app`; handlers, jobs and routes receive it, tests build their own."""

    settings: SlaMonitorSettings
    policies: Policies
    clocks: Clocks = field(default_factory=Clocks)
    wake: TimerWake = field(default_factory=TimerWake)
    """Wakes this process's timer job when a timer it must fire sooner than it planned is committed."""
    metrics: SlaMetrics = field(default_factory=lambda: SlaMetrics(CollectorRegistry()))

    @classmethod
    def of(cls, settings: SlaMonitorSettings, registry: CollectorRegistry | None = None) -> "SlaContext":
        """The context for these settings, its metrics in `registry` (a registry of its own if None)."""
        builtin = builtin_policy(
            first_response_seconds=settings.first_response_seconds, escalation=settings.sla_breach_escalation
        )
        return cls(
            settings=settings, policies=Policies(builtin=builtin), metrics=SlaMetrics(registry or CollectorRegistry())
        )


def get_context(request: Request) -> SlaContext:
    """The app's context (set by `create_app`)."""
    context: SlaContext = request.app.state.sla_context
    return context


ContextDep = Annotated[SlaContext, Depends(get_context)]
