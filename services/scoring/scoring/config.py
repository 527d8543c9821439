"""Scoring settings, created once."""

from functools import lru_cache
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from leadrelay.settings import ServiceSettings
from scoring.accounts.service import FUZZY_THRESHOLD

DEFAULT_SOURCES = [
    # REST and CRM sources, and what `leadrelay demo` sends
    "api", "crm-sync", "webinar", "pricing-page", "ebook", "trade-show", "referral",
    # webhook sources named after their kind, and the demo sources `make run` configures
    "hubspot", "mautic", "segment", "marketo", "pardot", "standard",
    "demo-hubspot", "demo-mautic", "demo-segment", "demo-marketo", "demo-pardot", "demo-standard",
]  # fmt: skip


class ScoringSettings(ServiceSettings):
    """Scoring's settings (see docs/configuration.md)."""

    service_name: str = "scoring"
    port: int = 8001
    database_url: str = "sqlite+aiosqlite:///./var/scoring.db"
    rescore_days: int = Field(default=30, ge=1, le=3650)
    rescore_chunk: int = Field(default=500, ge=1, le=10_000)
    rescore_poll_interval_seconds: float = Field(default=5.0, gt=0)
    scoring_sources: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_SOURCES), max_length=100
    )
    account_fuzzy_match_threshold: float = Field(default=FUZZY_THRESHOLD, ge=0, le=1)

    @field_validator("scoring_sources", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        # The environment gives "api,webinar,demo-hubspot"; code may pass a list.
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value


@lru_cache
def get_settings() -> ScoringSettings:
    """The process's settings."""
    return ScoringSettings()
