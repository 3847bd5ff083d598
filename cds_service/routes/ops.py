"""Operations endpoints: liveness, readiness, metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request

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
