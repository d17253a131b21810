"""Liveness and readiness probes (public: they reveal no data, only component state)."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from gateway.deps import AppComponents

router = APIRouter(tags=["health"])


class Alive(BaseModel):
    status: str = Field(examples=["alive"])


class Readiness(BaseModel):
    status: str = Field(examples=["ready", "not_ready"])
    checks: dict[str, str] = Field(description="each component's state: `ok`, or what is wrong with it")


@router.get("/healthz", response_model=Alive)
def healthz() -> dict:
    return {"status": "alive"}


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness, "description": "Not ready"}})
def readyz(components: AppComponents):
    checks = components.readiness()
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks}, status_code=200 if ready else 503
    )
