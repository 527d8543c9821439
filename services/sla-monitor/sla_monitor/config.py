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
        default=300.0, gt=0, description="The built-in policy (before an SLA is signed): time a rep has to respond."
    )
    sla_breach_escalation: Annotated[list[EscalationStep], NoDecode] = Field(
        default_factory=lambda: [EscalationStep.REASSIGN],
        max_length=len(EscalationStep),
        description="The built-in policy's escalation ladder, in order (the router acts on each step).",
    )
    timer_max_sleep_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Longest the monitor sleeps between looks for due timers; it wakes sooner for the next deadline "
        "and for timers this process starts, so this only bounds how late it sees timers another replica started.",
    )
    timer_fire_batch: int = Field(default=1000, gt=0, le=10_000, description="Timers fired per transaction.")
    sla_gauge_interval_seconds: float = Field(
        default=5.0, gt=0, description="How often the open-obligations and at-risk gauges are recounted."
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
