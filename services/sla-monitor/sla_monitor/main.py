"""The sla-monitor's bootstrap: the one place its parts are wired."""

from pathlib import Path

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from leadrelay.agreements import agreement_router
from leadrelay.service import ServiceSpec, create_service_app
from sla_monitor.config import SlaMonitorSettings, get_settings
from sla_monitor.policy.document import SLA
from sla_monitor.timers.handlers import handlers
from sla_monitor.timers.jobs import breach_due_timers

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def create_app(settings: SlaMonitorSettings | None = None, registry: CollectorRegistry | None = None) -> FastAPI:
    """Build the sla-monitor app."""
    settings = settings or get_settings()
    spec = ServiceSpec[SlaMonitorSettings](
        title="LeadRelay sla-monitor",
        description="Keeps a durable timer for every open SLA obligation and emits sla.* events.",
        migrations_dir=MIGRATIONS_DIR,
        handlers=handlers(settings),
        routers=[agreement_router(SLA)],
        openapi_tags=[
            {
                "name": "sla",
                "description": "The SLA policy: co-signed by marketing and sales (provisional format).",
            }
        ],
        jobs=[breach_due_timers],
    )
    return create_service_app(spec, settings, registry)
