"""Liveness and readiness probes."""

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from leadrelay.db import ping

health_router = APIRouter(tags=["health"])


@health_router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    """Always ok while the process serves HTTP."""
    return {"status": "ok"}


@health_router.get(
    "/readyz",
    summary="Readiness: database and broker reachable, consumer not stuck",
    responses={503: {"description": "A dependency is down", "content": {"application/json": {}}}},
)
async def readyz(request: Request) -> JSONResponse:
    """200 when every check passes, else 503 with the failing checks."""
    runtime = request.app.state.runtime
    database_ok, broker_ok = await asyncio.gather(ping(runtime.engine), runtime.bus.is_reachable())
    checks = {"database": "ok" if database_ok else "unreachable", "broker": "ok" if broker_ok else "unreachable"}
    if runtime.consumer is not None:
        checks["consumer"] = "stuck" if runtime.consumer.is_stuck() else "ok"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503
    )
