"""SLA monitor settings, created once."""

from functools import lru_cache
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from leadrelay.events import EscalationStep
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
    sla_breach_escalation: Annotated[list[EscalationStep], NoDecode] = Field(
        default_factory=lambda: [EscalationStep.REASSIGN],
        max_length=len(EscalationStep),
        description="Placeholder escalation every sla.breached carries, in order (the router acts on reassign).",
    )

    @field_validator("sla_breach_escalation", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        # The environment gives "remind,reassign"; an empty value means no escalation.
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value


@lru_cache
def get_settings() -> SlaMonitorSettings:
    """The process's settings."""
    return SlaMonitorSettings()
