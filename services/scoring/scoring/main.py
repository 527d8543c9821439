"""Scoring's bootstrap: the one place its parts are wired."""

from pathlib import Path

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from leadrelay.agreements import agreement_router
from leadrelay.service import ServiceSpec, create_service_app
from scoring.config import ScoringSettings, get_settings
from scoring.icp.document import ICP
from scoring.icp.preview import router as icp_preview_router
from scoring.scores.handlers import ScoringContext, handlers
from scoring.scores.jobs import rescore_job
from scoring.scores.metrics import ScoringMetrics

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def create_app(settings: ScoringSettings | None = None, registry: CollectorRegistry | None = None) -> FastAPI:
    """Build the scoring app."""
    settings = settings or get_settings()
    registry = registry or CollectorRegistry()
    context = ScoringContext(settings, ScoringMetrics(registry, sources=settings.scoring_sources))
    spec = ServiceSpec[ScoringSettings](
        title="LeadRelay scoring",
        description="Scores leads against the Ideal Customer Profile and explains every score.",
        migrations_dir=MIGRATIONS_DIR,
        handlers=handlers(context),
        jobs=[rescore_job(context)],
        routers=[agreement_router(ICP), icp_preview_router],
        openapi_tags=[
            {
                "name": "icp",
                "description": "The Ideal Customer Profile: co-signed by marketing and sales; preview a draft first.",
            }
        ],
    )
    return create_service_app(spec, settings, registry)
