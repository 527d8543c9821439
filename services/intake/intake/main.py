"""Intake's bootstrap: the one place its parts are wired."""

from pathlib import Path

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from intake.config import IntakeSettings, get_settings
from intake.leads import service as leads
from intake.leads.handlers import handlers
from intake.leads.jobs import redrive_lost_leads
from intake.leads.router import router as leads_router
from leadrelay import apikeys
from leadrelay.runtime import ServiceRuntime
from leadrelay.service import ServiceSpec, create_service_app

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
DEV_KEY_SCOPES = ["leads:read", "leads:write"]


async def seed_dev_api_key(runtime: ServiceRuntime[IntakeSettings]) -> None:
    """Store the development API key (hashed) so `make run` works out of the box."""
    async with runtime.sessions() as session:
        await apikeys.upsert(session, name="development", secret=runtime.settings.dev_api_key, scopes=DEV_KEY_SCOPES)


def create_app(settings: IntakeSettings | None = None, registry: CollectorRegistry | None = None) -> FastAPI:
    """Build the intake app."""
    settings = settings or get_settings()
    spec = ServiceSpec[IntakeSettings](
        title="LeadRelay intake",
        description="Accepts leads and serves the lead read model (stage, score, owner, SLA, timeline).",
        migrations_dir=MIGRATIONS_DIR,
        handlers=handlers(settings),
        routers=[leads_router],
        on_startup=[seed_dev_api_key],
        jobs=[redrive_lost_leads],
        openapi_tags=[{"name": "leads", "description": "Create and read leads."}],
        on_published=leads.record_published,
    )
    return create_service_app(spec, settings, registry)
