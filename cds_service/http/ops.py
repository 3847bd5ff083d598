"""Operations endpoints: liveness, readiness, metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz(request: Request) -> dict[str, object]:
    """Liveness, and which rule engine and rule-set version this process runs."""
    runtime = request.app.state.runtime
    return {
        "status": "ok",
        "engine": runtime.engine_name,
        "engine_note": runtime.engine_note,
        "ruleset_version": runtime.ruleset_version,
        "profiles": sorted(runtime.rulesets),
        "auth": runtime.settings.effective_auth_mode,
    }


def readiness(request: Request) -> dict[str, bool]:
    """Each check that must hold before a load balancer sends CDS calls here."""
    runtime = request.app.state.runtime
    try:
        decision_log = bool(runtime.decision_log.healthy())
    except Exception:  # a broken health probe means not ready, never a 500
        decision_log = False
    return {
        "started": bool(getattr(request.app.state, "accepting", False)),
        "rules": bool(runtime.rulesets) and bool(runtime.engines) and bool(runtime.services),
        "decision_log": decision_log,
    }


@router.get(
    "/readyz",
    responses={503: {"description": "not ready: rules not loaded, decision log unreachable beyond its buffer, or shutting down"}},
)
async def readyz(request: Request) -> JSONResponse:
    """Readiness: 200 when started, rules loaded and the decision log healthy; 503 otherwise."""
    checks = readiness(request)
    ready = all(checks.values())
    return JSONResponse({"status": "ready" if ready else "not-ready", "checks": checks}, status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}})
async def metrics_endpoint() -> Response:
    """Prometheus metrics of this process (text exposition format)."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
