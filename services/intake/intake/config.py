"""Intake settings, created once."""

import os
from functools import lru_cache

from pydantic import Field

from leadrelay.apikeys import DEFAULT_DEMO_MARKETING_KEY, DEFAULT_DEMO_SALES_KEY, DEFAULT_DEV_API_KEY
from leadrelay.db import is_sqlite
from leadrelay.settings import SecretKeySettings


def default_workers(database_url: str | None) -> int:
    """One worker per core on PostgreSQL; one on SQLite, whose single writer lock a second process only waits on."""
    return 1 if database_url is not None and is_sqlite(database_url) else os.cpu_count() or 1


class IntakeSettings(SecretKeySettings):
    """Intake's settings (see docs/configuration.md); LEADRELAY_SECRET_KEY encrypts webhook signing secrets."""

    service_name: str = "intake"
    port: int = 8000
    database_url: str = "sqlite+aiosqlite:///./var/intake.db"
    # Seeded only outside production; never shown in errors or logs (hide_input_in_errors).
    dev_api_key: str = Field(default=DEFAULT_DEV_API_KEY, validation_alias="LEADRELAY_DEV_API_KEY", min_length=16)
    demo_marketing_key: str = Field(
        default=DEFAULT_DEMO_MARKETING_KEY, validation_alias="LEADRELAY_DEMO_MARKETING_KEY", min_length=16
    )
    demo_sales_key: str = Field(
        default=DEFAULT_DEMO_SALES_KEY, validation_alias="LEADRELAY_DEMO_SALES_KEY", min_length=16
    )
    bootstrap_api_key: str | None = Field(default=None, validation_alias="LEADRELAY_BOOTSTRAP_API_KEY", min_length=32)
    key_announce_interval_seconds: float = Field(default=300.0, gt=0)
    redrive_after_seconds: float = Field(default=120.0, gt=0)
    redrive_check_interval_seconds: float = Field(default=30.0, gt=0)
    redrive_max_attempts: int = Field(default=10, ge=1)
    # Intake consumes only to fold other services' events into its read model, off the speed-to-lead
    # path: a fifth of a second of freshness buys a transaction per batch, not per event.
    consumer_linger_ms: int = Field(default=200, ge=0)
    workers: int = Field(
        default_factory=lambda data: default_workers(data.get("database_url")), validation_alias="INTAKE_WORKERS", ge=1
    )
    # The scheme and host senders address (HubSpot signs the full URI it posted to); unset: the request's own.
    webhook_public_url: str | None = Field(default=None, pattern=r"^https?://[^/?#]+$")
    webhook_prune_interval_seconds: float = Field(default=3600.0, gt=0)
    demo_sources: bool = Field(default=True, validation_alias="LEADRELAY_DEMO_SOURCES")
    webhook_rate_per_source_per_second: float = Field(default=200.0, ge=0)
    webhook_rate_burst: int = Field(default=1000, ge=1)


@lru_cache
def get_settings() -> IntakeSettings:
    """The process's settings."""
    return IntakeSettings()
