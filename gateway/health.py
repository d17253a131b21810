"""Liveness and readiness probes (public: they reveal no data, only component state)."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from gateway.deps import AppComponents

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict:
    return {"status": "alive"}


@router.get("/readyz")
def readyz(components: AppComponents):
    checks = components.readiness()
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks}, status_code=200 if ready else 503
    )
