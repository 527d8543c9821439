"""The sla-monitor's bootstrap: the one place its parts are wired."""

from pathlib import Path

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from leadrelay.agreements import agreement_router
from leadrelay.consumer import Handlers
from leadrelay.service import ServiceSpec, create_service_app
from sla_monitor.clocks.handlers import handlers as clock_handlers
from sla_monitor.config import SlaMonitorSettings, get_settings
from sla_monitor.context import SlaContext
from sla_monitor.policy.document import SLA
from sla_monitor.reports.jobs import gauge_job
from sla_monitor.reports.router import router as reports_router
from sla_monitor.timers.handlers import handlers as timer_handlers
from sla_monitor.timers.jobs import timer_job

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def handlers(context: SlaContext) -> Handlers:
    """Every event the sla-monitor consumes, to its handler."""
    return timer_handlers(context).extend(clock_handlers(context))


def create_app(settings: SlaMonitorSettings | None = None, registry: CollectorRegistry | None = None) -> FastAPI:
    """Build the sla-monitor app."""
    settings = settings or get_settings()
    registry = registry or CollectorRegistry()
    context = SlaContext.of(settings, registry)
    spec = ServiceSpec[SlaMonitorSettings](
        title="LeadRelay sla-monitor",
        description="Keeps a durable timer for every open SLA obligation on business clocks and emits sla.* events.",
        migrations_dir=MIGRATIONS_DIR,
        handlers=handlers(context),
        routers=[agreement_router(SLA), reports_router],
        openapi_tags=[
            {
                "name": "sla",
                "description": "The SLA policy (docs/sla.md), co-signed by marketing and sales; obligations, "
                "leads at risk and compliance.",
            }
        ],
        jobs=[timer_job(context), gauge_job(context)],
    )
    app = create_service_app(spec, settings, registry)
    app.state.sla_context = context
    return app
