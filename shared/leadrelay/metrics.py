"""Prometheus metrics every service exposes; one registry per app so tests start clean."""

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ServiceMetrics:
    """The platform metrics; labels are bounded (route templates, topics, types), never lead data."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.http_request_duration_seconds = Histogram(
            "leadrelay_http_request_duration_seconds",
            "HTTP request latency by route template and status code.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.events_consumed_total = Counter(
            "leadrelay_events_consumed_total",
            "Events taken from Kafka, by outcome (processed, duplicate, ignored).",
            ["topic", "type", "outcome"],
            registry=registry,
        )
        self.events_published_total = Counter(
            "leadrelay_events_published_total",
            "Events published to Kafka (outbox relay and dead letters).",
            ["topic"],
            registry=registry,
        )
        self.events_failed_total = Counter(
            "leadrelay_events_failed_total",
            "Failed attempts to handle an event (each retry counts).",
            ["topic", "type"],
            registry=registry,
        )
        self.events_dead_lettered_total = Counter(
            "leadrelay_events_dead_lettered_total",
            "Events sent to a dead-letter topic after their retries ran out.",
            ["topic"],
            registry=registry,
        )
        self.outbox_backlog = Gauge(
            "leadrelay_outbox_backlog",
            "Outbox rows committed but not yet published.",
            registry=registry,
        )
        self.leads_checked_in_broker_total = Counter(
            "leadrelay_leads_checked_in_broker_total",
            "In-flight leads whose lead.received was looked up in the broker's log (intake's re-drive).",
            registry=registry,
        )
        self.leads_redriven_total = Counter(
            "leadrelay_leads_redriven_total",
            "Leads whose lead.received was published again because the broker lost it, by reason.",
            ["reason"],
            registry=registry,
        )
        self.broker_losses_total = Counter(
            "leadrelay_broker_losses_total",
            "Times this process found the broker had lost its data (and recreated the topics).",
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "leadrelay_consumer_lag",
            "Messages behind the partition's high watermark.",
            ["topic", "partition"],
            registry=registry,
        )


class MetricsMiddleware:
    """Times every HTTP request under its route template (unmatched paths share one label)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            self.metrics.http_request_duration_seconds.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - started
            )


metrics_router = APIRouter()


@metrics_router.get("/metrics", include_in_schema=False)
async def metrics_endpoint(request: Request) -> Response:
    """Prometheus exposition of this process's registry."""
    registry: CollectorRegistry = request.app.state.runtime.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
