"""Liveness, readiness and metrics endpoints."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.deps import ServicesDep
from app.db.migrate import check_schema
from app.errors import Error

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The database (migrated) and the policy engine answer")
async def readyz(services: ServicesDep) -> JSONResponse:
    checks: dict[str, str] = {}
    for name, check in (
        ("database", lambda: check_schema(services.engine)),
        ("policy_engine", lambda: services.policy.check_health()),
    ):
        try:
            await run_in_threadpool(check)
            checks[name] = "ok"
        except Error as e:
            checks[name] = f"{e.code}: {e.message}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
