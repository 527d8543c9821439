"""SLA monitor settings, created once."""

from functools import lru_cache

from pydantic import Field

from leadrelay.settings import ServiceSettings


class SlaMonitorSettings(ServiceSettings):
    """The sla-monitor's settings (see docs/configuration.md)."""

    service_name: str = "sla-monitor"
    port: int = 8003
    database_url: str = "sqlite+aiosqlite:///./var/sla-monitor.db"
    first_response_seconds: float = Field(
        default=300.0, gt=0, description="Placeholder SLA: time a rep has to respond."
    )
    timer_check_interval_seconds: float = Field(default=1.0, gt=0)


@lru_cache
def get_settings() -> SlaMonitorSettings:
    """The process's settings."""
    return SlaMonitorSettings()
