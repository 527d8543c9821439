"""Router settings, created once."""

from functools import lru_cache

from pydantic import Field

from leadrelay.settings import SecretKeySettings


class RouterSettings(SecretKeySettings):
    """Router's settings (see docs/configuration.md); LEADRELAY_SECRET_KEY encrypts reps' channel secrets."""

    service_name: str = "router"
    port: int = 8002
    database_url: str = "sqlite+aiosqlite:///./var/router.db"
    default_rep_id: str = Field(default="rep-default", min_length=1, max_length=100)
    routing_queue_depth_interval_seconds: float = Field(default=15.0, gt=0, le=3600)


@lru_cache
def get_settings() -> RouterSettings:
    """The process's settings."""
    return RouterSettings()
