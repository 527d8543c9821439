"""Intake's bootstrap: the one place its parts are wired."""

from pathlib import Path

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import IntegrityError

from intake.accounts.router import router as accounts_router
from intake.activities.router import router as activities_router
from intake.config import IntakeSettings, get_settings
from intake.keys import service as keys
from intake.keys.jobs import announce_keys
from intake.keys.router import router as keys_router
from intake.leads import service as leads
from intake.leads.handlers import handlers
from intake.leads.jobs import redrive_lost_leads
from intake.leads.router import router as leads_router
from intake.sources import service as sources
from intake.sources.crypto import source_box
from intake.sources.router import router as sources_router
from intake.sources.schemas import SourcePut
from intake.webhooks.jobs import prune_webhook_deliveries
from intake.webhooks.router import router as webhooks_router
from leadrelay import idempotency_keys
from leadrelay.apikeys import Scope, Team
from leadrelay.demo import DEMO_SOURCES
from leadrelay.runtime import ServiceRuntime
from leadrelay.service import ServiceSpec, create_service_app

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

BOOTSTRAP_KEY_ID = "key_bootstrap"
DEMO_MARKETING_SCOPES = [
    Scope.LEADS_READ, Scope.ICP_WRITE, Scope.ICP_APPROVE, Scope.ROUTING_READ,
    Scope.SLA_READ, Scope.SLA_WRITE, Scope.SLA_APPROVE,
]  # fmt: skip
DEMO_SALES_SCOPES = [
    Scope.LEADS_READ, Scope.ICP_APPROVE, Scope.ROUTING_READ, Scope.ROUTING_WRITE, Scope.REPS_WRITE,
    Scope.SLA_READ, Scope.SLA_WRITE, Scope.SLA_APPROVE,
]  # fmt: skip
# The well-known keys seeded outside production: (id, name, team, scopes, the setting with the secret).
SEEDED_KEYS: list[tuple[str, str, Team, list[Scope], str]] = [
    ("key_development", "development", Team.OPS, list(Scope), "dev_api_key"),
    ("key_demo_marketing", "demo-marketing", Team.MARKETING, DEMO_MARKETING_SCOPES, "demo_marketing_key"),
    ("key_demo_sales", "demo-sales", Team.SALES, DEMO_SALES_SCOPES, "demo_sales_key"),
]


async def seed_keys(runtime: ServiceRuntime[IntakeSettings]) -> None:
    """Seed the development key (every scope, team ops) and the two demo keys, outside production.

    In production those well-known keys are revoked if a previous run left them, and only the
    bootstrap key (scope `admin`, from LEADRELAY_BOOTSTRAP_API_KEY) is seeded, to create real keys.
    """
    settings = runtime.settings
    async with runtime.sessions() as session:
        if settings.environment == "production":
            await keys.retire(session, key_ids=[key_id for key_id, *_ in SEEDED_KEYS])
            if settings.bootstrap_api_key:
                await keys.seed(
                    session,
                    key_id=BOOTSTRAP_KEY_ID,
                    name="bootstrap",
                    team=Team.OPS,
                    scopes=[Scope.ADMIN],
                    secret=settings.bootstrap_api_key,
                )
            return
        for key_id, name, team, scopes, setting in SEEDED_KEYS:
            secret = getattr(settings, setting)
            await keys.seed(session, key_id=key_id, name=name, team=team, scopes=scopes, secret=secret)


async def seed_demo_sources(runtime: ServiceRuntime[IntakeSettings]) -> None:
    """Outside production, configure the demo webhook sources `leadrelay demo` signs for (once: kept if edited)."""
    if runtime.settings.environment == "production" or not runtime.settings.demo_sources:
        return
    box = source_box(runtime.settings.secret_key.get_secret_value())
    async with runtime.sessions() as session:
        for name, (kind, secret) in DEMO_SOURCES.items():
            if await sources.get(session, name=name) is None:
                source_in = SourcePut.model_validate({"kind": kind, "secrets": [secret]})
                try:
                    await sources.put(session, name=name, source_in=source_in, box=box, actor=None)
                except IntegrityError:  # another intake worker seeded it first
                    await session.rollback()


def create_app(settings: IntakeSettings | None = None, registry: CollectorRegistry | None = None) -> FastAPI:
    """Build the intake app."""
    settings = settings or get_settings()
    spec = ServiceSpec[IntakeSettings](
        title="LeadRelay intake",
        description="Accepts leads, serves the lead read model, and owns the API-key registry.",
        migrations_dir=MIGRATIONS_DIR,
        handlers=handlers(settings),
        routers=[leads_router, activities_router, accounts_router, keys_router, sources_router, webhooks_router],
        on_startup=[seed_keys, seed_demo_sources],
        jobs=[redrive_lost_leads, announce_keys, idempotency_keys.prune_expired_keys, prune_webhook_deliveries],
        openapi_tags=[
            {"name": "leads", "description": "Create and read leads."},
            {
                "name": "activities",
                "description": "Record rep, CRM and marketing activity on leads (scope `activities:write`).",
            },
            {"name": "accounts", "description": "Sync accounts from a CRM (scope `accounts:write`)."},
            {"name": "keys", "description": "Create, list and revoke API keys (scope `admin`)."},
            {"name": "sources", "description": "Configure webhook sources: kind, signing secrets, field mapping."},
            {
                "name": "webhooks",
                "description": "Signed webhooks from marketing platforms (authenticated by signature, not by key).",
            },
        ],
        on_published=leads.record_published,
    )
    return create_service_app(spec, settings, registry)
