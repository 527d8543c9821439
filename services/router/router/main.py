"""Router's bootstrap: the one place its parts are wired."""

from pathlib import Path

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from leadrelay import idempotency_keys
from leadrelay.agreements import agreement_router
from leadrelay.service import ServiceSpec, create_service_app
from router.assignments.handlers import handlers
from router.assignments.router import router as assignments_router
from router.config import RouterSettings, get_settings
from router.context import RouterContext
from router.defaults import seed_defaults
from router.metrics import queue_depth_job
from router.notifications.handlers import handlers as notification_handlers
from router.notifications.jobs import delivery_job
from router.notifications.metrics import NotificationMetrics
from router.notifications.router import router as notifications_router
from router.reassignment.handlers import handlers as reassignment_handlers
from router.reassignment.router import router as reassignment_router
from router.reps.router import router as reps_router
from router.rules.document import ROUTING
from router.simulation.router import router as simulation_router
from router.teams.router import router as teams_router

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def create_app(settings: RouterSettings | None = None, registry: CollectorRegistry | None = None) -> FastAPI:
    """Build the router app."""
    settings = settings or get_settings()
    registry = registry or CollectorRegistry()
    context = RouterContext.of(settings, registry)
    spec = ServiceSpec[RouterSettings](
        title="LeadRelay router",
        description="Assigns leads to reps and explains every assignment.",
        migrations_dir=MIGRATIONS_DIR,
        handlers=handlers(context).extend(notification_handlers(context)).extend(reassignment_handlers(context)),
        on_startup=[seed_defaults],
        jobs=[
            idempotency_keys.prune_expired_keys,
            delivery_job(context, NotificationMetrics(registry)),
            queue_depth_job(context.metrics),
        ],
        routers=[
            agreement_router(ROUTING),
            simulation_router,
            teams_router,
            reps_router,
            assignments_router,
            reassignment_router,
            notifications_router,
        ],
        openapi_tags=[
            {
                "name": "routing",
                "description": "The routing rules (docs/routing.md): approved by sales or ops.",
            },
            {
                "name": "teams",
                "description": "Teams: timezone, working hours, holiday calendar, manager; announced as team.changed.",
            },
            {
                "name": "assignments",
                "description": "Where each lead went and why: the rules evaluated and every candidate considered.",
            },
            {
                "name": "reps",
                "description": "Reps: teams, weight, caps, skills, availability and notification channels.",
            },
        ],
    )
    app = create_service_app(spec, settings, registry)
    app.state.router_context = context
    return app
