"""The one place a service is wired: database, migrations, bus, outbox relay, consumer, jobs, HTTP."""

import asyncio
import logging
import multiprocessing
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, Generic

import uvicorn
from fastapi import APIRouter, FastAPI
from fastapi.telemetry import TelemetryConfig
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from leadrelay import apikeys, collector, idempotency, outbox
from leadrelay.audit import audit_router
from leadrelay.batching import GroupCommitter
from leadrelay.consumer import EventConsumer, Handlers
from leadrelay.db import create_engine, create_session_factory, run_migrations
from leadrelay.events import ApiKeyChanged
from leadrelay.health import health_router
from leadrelay.kafka import BrokerWatch, KafkaBus
from leadrelay.leader import LeaderLock, run_as_leader
from leadrelay.limits import EdgeLimits
from leadrelay.logs import configure_logging, logging_config
from leadrelay.metrics import MetricsMiddleware, ServiceMetrics, metrics_router
from leadrelay.outbox import OutboxRelay, PublishedHook
from leadrelay.problems import install_problem_handlers
from leadrelay.runtime import ServiceRuntime, SettingsT
from leadrelay.settings import ServiceSettings
from leadrelay.wakeups import ProcessWakeups

logger = logging.getLogger(__name__)

NO_OPENTELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}

PLATFORM_TAGS = [
    {"name": "identity", "description": "Which API key is calling (keys are created and revoked on intake)."},
    {"name": "audit", "description": "This service's admin actions (scope `admin`)."},
]

Job = Callable[[ServiceRuntime[SettingsT]], Awaitable[None]]


@dataclass(frozen=True)
class ServiceSpec(Generic[SettingsT]):
    """What makes one service itself; everything else is the platform's."""

    title: str
    description: str
    migrations_dir: Path
    version: str = "0.1.0"
    handlers: Handlers = field(default_factory=Handlers)
    routers: Sequence[APIRouter] = ()
    on_startup: Sequence[Job[SettingsT]] = ()
    jobs: Sequence[Job[SettingsT]] = ()
    openapi_tags: Sequence[dict[str, Any]] = ()
    on_published: PublishedHook | None = None


async def _supervise(name: str, job: Callable[[], Awaitable[None]]) -> None:
    # A background job that crashes is logged and restarted; it must never take the service down.
    while True:
        try:
            await job()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("background job crashed, restarting", extra={"job": name})
            await asyncio.sleep(1.0)


def _as_leader(
    engine: AsyncEngine, name: str, job: Callable[[], Awaitable[None]], settings: ServiceSettings
) -> Callable[[], Awaitable[None]]:
    # Jobs run on one leader among the processes sharing the database; each job elects its own.
    lock = LeaderLock(engine, f"job:{name}")
    return partial(run_as_leader, lock, job, retry_interval=settings.leader_retry_interval_seconds)


def _stop_with_supervisor() -> Callable[[], None]:
    """In a worker process of serve(workers > 1), stop as on SIGTERM once the supervisor dies.

    Otherwise a supervisor killed with SIGKILL leaves its workers running, holding the port and
    their leader locks. Returns the function that stops watching.
    """
    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return lambda: None
    loop = asyncio.get_running_loop()
    sentinel = parent.sentinel  # readable (end of file) once the supervisor is gone

    def supervisor_gone() -> None:
        loop.remove_reader(sentinel)
        logger.warning("supervisor process gone, stopping")
        os.kill(os.getpid(), signal.SIGTERM)

    def stop_watching() -> None:
        loop.remove_reader(sentinel)

    loop.add_reader(sentinel, supervisor_gone)
    return stop_watching


def _sqlite_wakeups(database_url: str) -> ProcessWakeups | None:
    # Processes sharing a SQLite file (intake's workers) wake each other's relay through sockets.
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return ProcessWakeups(url.database)


def create_service_app(
    spec: ServiceSpec[SettingsT], settings: SettingsT, registry: CollectorRegistry | None = None
) -> FastAPI:
    """Build a service's FastAPI app; its lifespan starts and stops every long-lived client once."""
    metrics = ServiceMetrics(registry or CollectorRegistry())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url)
        await run_migrations(engine, spec.migrations_dir)
        sessions = create_session_factory(engine)
        bus = KafkaBus(settings, metrics)
        watch = BrokerWatch(bus, interval=settings.broker_check_interval_seconds, metrics=metrics)
        relay = OutboxRelay(
            engine=engine,
            sessions=sessions,
            bus=bus,
            metrics=metrics,
            batch_size=settings.outbox_batch_size,
            poll_interval=settings.outbox_poll_interval_seconds,
            max_backoff=settings.kafka_connect_backoff_max_seconds,
            **({"on_published": spec.on_published} if spec.on_published else {}),
        )
        wakeups = _sqlite_wakeups(settings.database_url)
        # Only the leading relay publishes: while this process's leads, its commits need not wake others.
        outbox.wake_on_commit(sessions, relay.wake, others=wakeups, leading=lambda: relay.leader.held)
        # Every service keeps its copy of the key registry from intake's announcements.
        handlers = Handlers().on_batch(ApiKeyChanged, apikeys.apply_announcements).extend(spec.handlers)
        consumer = EventConsumer(
            settings=settings, bus=bus, sessions=sessions, handlers=handlers, metrics=metrics, watch=watch
        )
        writer = GroupCommitter(sessions, max_batch=settings.group_commit_max_batch)
        runtime = ServiceRuntime(settings, engine, sessions, metrics, bus, watch, relay, writer, consumer)
        app.state.runtime = runtime
        for startup in spec.on_startup:
            await startup(runtime)
        watch_task = asyncio.create_task(_supervise("broker-watch", watch.run))
        relay_task = asyncio.create_task(_supervise("outbox-relay", relay.run))
        listen = (
            partial(wakeups.listen, relay.wake) if wakeups else partial(outbox.listen_for_commits, engine, relay.wake)
        )
        listen_task = asyncio.create_task(_supervise("outbox-notifications", listen))
        consumer_task = asyncio.create_task(_supervise("consumer", consumer.run))
        jobs: dict[str, Callable[[], Awaitable[None]]] = {job.__name__: partial(job, runtime) for job in spec.jobs}
        retention = timedelta(hours=settings.processed_event_retention_hours)
        jobs["prune-processed-events"] = partial(idempotency.prune_periodically, sessions, retention=retention)
        job_tasks = [
            asyncio.create_task(_supervise(name, _as_leader(engine, name, job, settings))) for name, job in jobs.items()
        ]
        stop_watching_supervisor = _stop_with_supervisor()
        collector.tune_for_service(young_threshold=settings.gc_young_threshold)
        logger.info("service started", extra={"port": settings.port, "topics": consumer.topics})
        try:
            yield
        finally:
            stop_watching_supervisor()
            if consumer_task:
                consumer.stop()
                try:
                    await asyncio.wait_for(consumer_task, timeout=15)
                except TimeoutError:
                    logger.warning("consumer did not stop in time")
            await writer.close()
            background = [*job_tasks, relay_task, watch_task, listen_task]
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await relay.stop()
            if wakeups:
                wakeups.close()
            await bus.close()
            await engine.dispose()
            logger.info("service stopped")

    app = FastAPI(
        title=spec.title,
        description=spec.description,
        version=spec.version,
        lifespan=lifespan,
        openapi_tags=[*spec.openapi_tags, *PLATFORM_TAGS],
        # FastAPI's native OpenTelemetry looks for a configured provider on every request (3% of
        # intake's CPU under load); LeadRelay installs no OpenTelemetry SDK and exports Prometheus.
        telemetry=NO_OPENTELEMETRY,
    )
    install_problem_handlers(app)
    app.add_middleware(EdgeLimits, settings=settings)  # inside the metrics: its refusals are timed too
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.include_router(health_router)
    app.include_router(metrics_router)
    app.include_router(apikeys.identity_router)
    for router in spec.routers:
        app.include_router(router)
    app.include_router(audit_router)
    apikeys.document_scopes(app)
    return app


def serve(app: FastAPI | str, settings: ServiceSettings, *, workers: int = 1) -> None:
    """Run a service under uvicorn with JSON logs; SIGINT/SIGTERM shut it down gracefully.

    With `workers` > 1, `app` is the import string of the app factory ("intake.main:create_app"):
    each worker process builds its own app with its own lifespan, behind one listening socket.
    """
    configure_logging(settings.service_name, settings.log_level)
    uvicorn.run(
        app,
        factory=isinstance(app, str),
        workers=workers,
        host=settings.host,
        port=settings.port,
        log_config=logging_config(settings.service_name, settings.log_level),
        timeout_graceful_shutdown=20,
    )
