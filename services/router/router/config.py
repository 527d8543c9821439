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
    notify_retry_base_seconds: float = Field(default=1.0, gt=0)
    notify_retry_cap_seconds: float = Field(default=900.0, gt=0)
    notify_horizon_seconds: float = Field(default=86_400.0, gt=0)
    notify_sla_wait_seconds: float = Field(default=0.3, ge=0)
    notify_timeout_seconds: float = Field(default=5.0, gt=0)
    notify_concurrency: int = Field(default=32, ge=1)
    notify_max_sleep_seconds: float = Field(default=1.0, gt=0)
    routing_queue_depth_interval_seconds: float = Field(default=15.0, gt=0, le=3600)


@lru_cache
def get_settings() -> RouterSettings:
    """The process's settings."""
    return RouterSettings()
