"""HTTP routes: thin. Parse, call the pipeline, answer."""

from __future__ import annotations

from fastapi import APIRouter, Request

from cds_service import pipeline, prefetch
from cds_service.errors import BadRequest, UnknownService
from cds_service.models import CDSRequest, CDSResponse, Discovery, ErrorBody, Feedback
from cds_service.runtime import Runtime
from cds_service.services import Service, prefetch_templates

router = APIRouter()
ERRORS = {
    400: {"model": ErrorBody, "description": "not a valid CDS Hooks request for this service"},
    404: {"model": ErrorBody, "description": "unknown service"},
    412: {"model": ErrorBody, "description": "data the hook needs could not be obtained"},
    413: {"model": ErrorBody, "description": "body too large"},
}


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime


def service_of(runtime: Runtime, service_id: str) -> Service:
    service = runtime.services.get(service_id)
    if service is None:
        raise UnknownService(f"no service {service_id!r}; see GET /cds-services")
    return service


@router.get("/cds-services", response_model=Discovery, response_model_exclude_none=True, tags=["CDS Hooks"])
async def discovery(request: Request) -> Discovery:
    """CDS Hooks discovery: the services, their hooks and prefetch templates."""
    runtime = runtime_of(request)
    return Discovery(services=[s.describe() for s in runtime.services.values()])


@router.post(
    "/cds-services/{service_id}",
    response_model=CDSResponse,
    response_model_exclude_none=True,
    responses=ERRORS,
    tags=["CDS Hooks"],
)
async def invoke(service_id: str, body: CDSRequest, request: Request) -> CDSResponse:
    """Invoke a service: answers `{"cards": [...]}`."""
    runtime = runtime_of(request)
    service = service_of(runtime, service_id)
    if body.hook != service.hook:
        raise BadRequest(f"service {service_id} answers hook {service.hook}, not {body.hook}")
    data = prefetch.collect(body, prefetch_templates())
    evaluation = pipeline.evaluate(body, service, runtime.engines[service.profile], data, now=runtime.clock(), base_url=str(request.base_url).rstrip("/"))
    return CDSResponse(
        cards=evaluation.cards,
        extension={"decision-id": evaluation.decision_id, "ruleset-version": service.ruleset.version},
    )


@router.post(
    "/cds-services/{service_id}/feedback",
    responses={k: v for k, v in ERRORS.items() if k in (400, 404, 413)},
    tags=["CDS Hooks"],
)
async def feedback(service_id: str, body: Feedback, request: Request) -> dict[str, int]:
    """CDS Hooks feedback on cards this service returned."""
    service_of(runtime_of(request), service_id)
    return {"received": len(body.feedback)}


@router.get("/healthz", tags=["operations"])
async def healthz(request: Request) -> dict[str, object]:
    """Liveness, and which rule engine and rule-set version this process runs."""
    runtime = runtime_of(request)
    return {
        "status": "ok",
        "engine": runtime.engine_name,
        "engine_note": runtime.engine_note,
        "ruleset_version": runtime.ruleset_version,
        "profiles": sorted(runtime.rulesets),
        "auth": runtime.settings.effective_auth_mode,
    }
