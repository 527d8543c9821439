"""Intake settings, created once."""

import os
from functools import lru_cache

from pydantic import Field, model_validator

from leadrelay.apikeys import DEFAULT_DEV_API_KEY
from leadrelay.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    """Intake's settings (see docs/configuration.md)."""

    service_name: str = "intake"
    port: int = 8000
    database_url: str = "sqlite+aiosqlite:///./var/intake.db"
    dev_api_key: str = Field(default=DEFAULT_DEV_API_KEY, validation_alias="LEADRELAY_DEV_API_KEY", min_length=16)
    redrive_after_seconds: float = Field(default=120.0, gt=0)
    redrive_check_interval_seconds: float = Field(default=30.0, gt=0)
    redrive_max_attempts: int = Field(default=10, ge=1)
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, validation_alias="INTAKE_WORKERS", ge=1)

    @model_validator(mode="after")
    def _no_default_key_in_production(self) -> "IntakeSettings":
        if self.environment == "production" and self.dev_api_key == DEFAULT_DEV_API_KEY:
            raise ValueError("LEADRELAY_DEV_API_KEY is the documented default; set a secret one in production")
        return self


@lru_cache
def get_settings() -> IntakeSettings:
    """The process's settings."""
    return IntakeSettings()
