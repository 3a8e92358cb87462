"""Liveness and readiness: /healthz answers while the process runs; /readyz (503 when not ready)
checks the services a patient's message needs (channels/readiness.py)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from channels.deps import ReadinessDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(readiness: ReadinessDep) -> JSONResponse:
    ok, body = await readiness.report()
    return JSONResponse({"status": "ready" if ok else "not_ready", **body}, status_code=200 if ok else 503)
