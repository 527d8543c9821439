"""Router settings, created once."""

from functools import lru_cache

from pydantic import Field, SecretStr, model_validator

from leadrelay.secrets import DEFAULT_SECRET_KEY
from leadrelay.settings import ServiceSettings


class RouterSettings(ServiceSettings):
    """Router's settings (see docs/configuration.md)."""

    service_name: str = "router"
    port: int = 8002
    database_url: str = "sqlite+aiosqlite:///./var/router.db"
    default_rep_id: str = Field(default="rep-default", min_length=1, max_length=100)
    # Encrypts reps' webhook secrets and Slack URLs at rest (a key is derived from it with HKDF).
    secret_key: SecretStr = Field(
        default=SecretStr(DEFAULT_SECRET_KEY), validation_alias="LEADRELAY_SECRET_KEY", min_length=16
    )

    @model_validator(mode="after")
    def _no_development_secret_key_in_production(self) -> "RouterSettings":
        if self.environment == "production" and self.secret_key.get_secret_value() == DEFAULT_SECRET_KEY:
            raise ValueError("LEADRELAY_SECRET_KEY must be set in production: the development default is refused")
        return self


@lru_cache
def get_settings() -> RouterSettings:
    """The process's settings."""
    return RouterSettings()
