"""Scoring settings, created once."""

from functools import lru_cache

from pydantic import Field

from leadrelay.settings import ServiceSettings


class ScoringSettings(ServiceSettings):
    """Scoring's settings (see docs/configuration.md)."""

    service_name: str = "scoring"
    port: int = 8001
    database_url: str = "sqlite+aiosqlite:///./var/scoring.db"
    mql_threshold: int = Field(default=50, ge=0, le=100)


@lru_cache
def get_settings() -> ScoringSettings:
    """The process's settings."""
    return ScoringSettings()
