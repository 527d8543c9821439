"""The baseline for intake's throughput: a bare FastAPI `POST /v1/leads` that parses the JSON body into a dict.

No validation model, no authentication, no database, no outbox: what FastAPI and uvicorn cost on
this machine with the same server settings as the services (httptools, uvloop, no access log).
`bench/pipeline.py` runs it as `python -m bare_intake` with PORT and HOST set.
"""

import os
from typing import Any
from uuid import uuid4

import uvicorn
from fastapi import FastAPI, HTTPException, Request, status

app = FastAPI()


@app.post("/v1/leads", status_code=status.HTTP_202_ACCEPTED)
async def create_lead(request: Request) -> dict[str, str]:
    """Parse the body like intake does before validation; answer like intake does."""
    body: Any = await request.json()
    if not isinstance(body, dict):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "expected a JSON object")
    return {"id": str(uuid4()), "status": "accepted"}


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness, for the benchmark's wait."""
    return {"status": "ok"}


if __name__ == "__main__":
    uvicorn.run(
        app,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ["PORT"]),
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )
