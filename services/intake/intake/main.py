"""Intake's bootstrap: the one place its parts are wired."""

from pathlib import Path

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from intake.config import IntakeSettings, get_settings
from intake.leads.handlers import HANDLERS
from intake.leads.jobs import redrive_stuck_leads
from intake.leads.router import router as leads_router
from leadrelay import apikeys
from leadrelay.service import ServiceRuntime, ServiceSpec, create_service_app

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
DEV_KEY_SCOPES = ["leads:read", "leads:write"]


async def seed_dev_api_key(runtime: ServiceRuntime) -> None:
    """Store the development API key (hashed) so `make run` works out of the box."""
    settings = runtime.settings
    assert isinstance(settings, IntakeSettings)
    async with runtime.sessions() as session:
        await apikeys.upsert(session, name="development", secret=settings.dev_api_key, scopes=DEV_KEY_SCOPES)


def create_app(settings: IntakeSettings | None = None, registry: CollectorRegistry | None = None) -> FastAPI:
    """Build the intake app."""
    spec = ServiceSpec(
        title="LeadRelay intake",
        description="Accepts leads and serves the lead read model (stage, score, owner, SLA, timeline).",
        migrations_dir=MIGRATIONS_DIR,
        handlers=HANDLERS,
        routers=[leads_router],
        on_startup=[seed_dev_api_key],
        jobs=[redrive_stuck_leads],
        openapi_tags=[{"name": "leads", "description": "Create and read leads."}],
    )
    return create_service_app(spec, settings or get_settings(), registry)
