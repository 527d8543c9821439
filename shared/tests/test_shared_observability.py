"""JSON logs with lead and event ids, and per-app Prometheus metrics with bounded labels."""

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import trace
from prometheus_client import CollectorRegistry, generate_latest

from leadrelay.logs import JsonFormatter, event_id_var, lead_id_var
from leadrelay.metrics import MetricsMiddleware, ServiceMetrics
from leadrelay.service import ServiceSpec, create_service_app
from leadrelay.settings import ServiceSettings
from leadrelay.testing import free_port


@pytest.fixture
def json_log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(service="router"))
    logger = logging.getLogger("leadrelay.tests.json")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def entries(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_log_carries_ids_from_context_and_extra_fields(json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = json_log
    lead_token, event_token = lead_id_var.set("lead-42"), event_id_var.set("event-7")
    try:
        logger.warning(
            "assigned %s", "rep-7", extra={"rep_id": "rep-7", "attempt": 2, "at": datetime(2026, 1, 1, tzinfo=UTC)}
        )
    finally:
        lead_id_var.reset(lead_token)
        event_id_var.reset(event_token)
    logger.info("after the event")

    first, second = entries(stream)
    assert first["message"] == "assigned rep-7"
    assert (first["level"], first["service"], first["logger"]) == ("warning", "router", "leadrelay.tests.json")
    assert (first["lead_id"], first["event_id"]) == ("lead-42", "event-7")
    assert (first["rep_id"], first["attempt"], first["at"]) == ("rep-7", 2, "2026-01-01 00:00:00+00:00")
    assert datetime.fromisoformat(str(first["time"])).utcoffset() is not None
    # Only the message's own fields, none of LogRecord's internals.
    assert set(first) == {
        "time",
        "level",
        "service",
        "logger",
        "message",
        "lead_id",
        "event_id",
        "rep_id",
        "attempt",
        "at",
    }
    # Outside the event's context the ids are gone.
    assert "lead_id" not in second
    assert "event_id" not in second


def test_json_log_keeps_an_exception_on_one_line(json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = json_log
    try:
        raise ValueError("bad score")
    except ValueError:
        logger.exception("scoring failed")
    assert len(stream.getvalue().splitlines()) == 1
    (entry,) = entries(stream)
    assert entry["level"] == "error"
    assert "ValueError: bad score" in str(entry["exception"])


def test_service_metrics_on_two_registries_do_not_clash() -> None:
    first, second = ServiceMetrics(CollectorRegistry()), ServiceMetrics(CollectorRegistry())
    first.events_consumed_total.labels("leads.scored", "lead.scored", "processed").inc()
    first.outbox_backlog.set(5)
    labels = {"topic": "leads.scored", "type": "lead.scored", "outcome": "processed"}
    assert first.registry.get_sample_value("leadrelay_events_consumed_total", labels) == 1
    assert second.registry.get_sample_value("leadrelay_events_consumed_total", labels) is None
    assert second.registry.get_sample_value("leadrelay_outbox_backlog") == 0
    assert b"leadrelay_consumer_lag" in generate_latest(second.registry)


def test_service_metrics_twice_on_one_registry_is_refused() -> None:
    registry = CollectorRegistry()
    ServiceMetrics(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        ServiceMetrics(registry)


async def test_http_metrics_use_the_route_template_not_the_path() -> None:
    metrics = ServiceMetrics(CollectorRegistry())
    app = FastAPI()
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.get("/v1/leads/{lead_id}")
    async def lead(lead_id: str) -> dict[str, str]:
        return {"id": lead_id}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        for lead_id in ("a", "b", "c"):
            assert (await client.get(f"/v1/leads/{lead_id}")).status_code == 200
        assert (await client.get("/v1/leads/a/b/c")).status_code == 404

    def count(route: str, status: str) -> float | None:
        labels = {"method": "GET", "route": route, "status": status}
        return metrics.registry.get_sample_value("leadrelay_http_request_duration_seconds_count", labels)

    assert count("/v1/leads/{lead_id}", "200") == 3
    assert count("unmatched", "404") == 1
    assert b"/v1/leads/a" not in generate_latest(metrics.registry)


async def test_service_apps_look_up_no_opentelemetry_provider_per_request(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # FastAPI's native OpenTelemetry asks for the global providers on every request; a service app turns it off.
    lookups: list[str] = []
    real = trace.get_tracer_provider

    def counted() -> trace.TracerProvider:
        lookups.append("tracer")
        return real()

    monkeypatch.setattr(trace, "get_tracer_provider", counted)
    settings = ServiceSettings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
    )
    app = create_service_app(ServiceSpec(title="test", description="test", migrations_dir=tmp_path), settings)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        assert (await client.get("/healthz")).status_code == 200
    assert lookups == []
    assert await _default_app_looks_up(lookups)


async def _default_app_looks_up(lookups: list[str]) -> bool:
    """The control: a default FastAPI app does look the provider up (so the test above can fail)."""
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        assert (await client.get("/healthz")).status_code == 200
    return lookups == ["tracer"]
