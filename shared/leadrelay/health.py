"""Liveness and readiness probes."""

import asyncio
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from leadrelay.db import ping
from leadrelay.runtime import RuntimeDep

health_router = APIRouter(tags=["health"])


class Readiness(BaseModel):
    """What /readyz answers: the overall verdict and each check.

    `database`: `ok` or `unreachable`; `broker`: `ok`, `unreachable` or `recovering` (it lost its data
    and the topics are being recreated); `consumer`: `ok`, `connecting` (joining its group, also
    after a broker loss) or `stuck`.
    """

    status: Literal["ready", "not ready"]
    checks: dict[str, str]


@health_router.get(
    "/healthz",
    summary="Liveness: the process answers",
    responses={
        200: {"description": "The process serves HTTP", "content": {"application/json": {"example": {"status": "ok"}}}}
    },
)
async def healthz() -> dict[str, str]:
    """Always ok while the process serves HTTP."""
    return {"status": "ok"}


@health_router.get(
    "/readyz",
    summary="Readiness: database and broker reachable, consumer not stuck",
    response_model=None,
    responses={
        200: {
            "model": Readiness,
            "description": "Every check passes",
            "content": {
                "application/json": {
                    "example": {"status": "ready", "checks": {"database": "ok", "broker": "ok", "consumer": "ok"}}
                }
            },
        },
        503: {
            "model": Readiness,
            "description": "A dependency is down (or the consumer is stuck)",
            "content": {
                "application/json": {
                    "example": {
                        "status": "not ready",
                        "checks": {"database": "ok", "broker": "unreachable", "consumer": "ok"},
                    }
                }
            },
        },
    },
)
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """200 when every check passes, else 503 with the failing checks."""
    database_ok, broker_ok = await asyncio.gather(ping(runtime.engine), runtime.bus.is_reachable())
    checks = {"database": "ok" if database_ok else "unreachable", "broker": "ok" if broker_ok else "unreachable"}
    if broker_ok and runtime.watch.recovering:
        checks["broker"] = "recovering"
    if runtime.consumer is not None:
        consumer = runtime.consumer
        checks["consumer"] = "stuck" if consumer.is_stuck() else "ok" if consumer.connected else "connecting"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503
    )
