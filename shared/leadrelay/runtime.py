"""The long-lived parts of a running service, typed by its settings, and the dependency that reaches them."""

from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from leadrelay.batching import GroupCommitter
from leadrelay.consumer import EventConsumer
from leadrelay.db import SessionFactory
from leadrelay.kafka import BrokerWatch, KafkaBus
from leadrelay.metrics import ServiceMetrics
from leadrelay.outbox import OutboxRelay
from leadrelay.settings import ServiceSettings

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


@dataclass
class ServiceRuntime(Generic[SettingsT]):
    """Long-lived parts of a running service, created once in the lifespan, typed by its settings."""

    settings: SettingsT
    engine: AsyncEngine
    sessions: SessionFactory
    metrics: ServiceMetrics
    bus: KafkaBus
    watch: BrokerWatch
    relay: OutboxRelay
    writer: GroupCommitter
    consumer: EventConsumer | None


def get_runtime(request: Request) -> ServiceRuntime[Any]:
    """The runtime of the app serving this request."""
    runtime: ServiceRuntime[Any] = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[ServiceRuntime[Any], Depends(get_runtime)]
