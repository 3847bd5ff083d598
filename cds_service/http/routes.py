"""CDS Hooks routes: thin. Authenticate, parse, gather data, run the pipeline, record, answer."""

from __future__ import annotations

import time
from typing import Any, Callable, Coroutine

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute

from cds_service import pipeline
from cds_service.errors import BadRequest, CDSError, UnknownService
from cds_service.hooks import HOOKS, CDSRequest, CDSResponse, Discovery, ErrorBody, Feedback, FeedbackReceipt
from cds_service.http.auth import Caller, fhir_servers_for
from cds_service.http.middleware import BODY_SIZE_KEY, PARSED_BODY_KEY
from cds_service.ids import new_id
from cds_service.observability import metrics
from cds_service.observability.logging import bind
from cds_service.pipeline.services import Service
from cds_service.runtime import Runtime


class ParsedBodyRequest(Request):
    """A request whose JSON body is the one the guard already parsed (orjson) for its limits.

    FastAPI still reads the body, checks its Content-Type and validates it as it always does;
    only the second parse is saved. A body the guard could not parse is parsed here as usual,
    so an invalid one gets FastAPI's own error.
    """

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = self.scope[PARSED_BODY_KEY] if PARSED_BODY_KEY in self.scope else await super().json()
        return self._json


class ParsedBodyRoute(APIRoute):
    """FastAPI's route with `ParsedBodyRequest` (FastAPI's "custom Request and APIRoute class")."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def with_parsed_body(request: Request) -> Response:
            return await handler(ParsedBodyRequest(request.scope, request.receive))

        return with_parsed_body


router = APIRouter(tags=["CDS Hooks"], route_class=ParsedBodyRoute)
ERRORS = {
    400: {"model": ErrorBody, "description": "not a valid CDS Hooks request for this service"},
    401: {"model": ErrorBody, "description": "the bearer JWT is missing or not acceptable"},
    404: {"model": ErrorBody, "description": "unknown service"},
    412: {"model": ErrorBody, "description": "data the hook needs could not be obtained"},
    413: {"model": ErrorBody, "description": "body too large"},
    503: {"model": ErrorBody, "description": "the rule engine could not answer safely"},
}


class OrjsonResponse(Response):
    """JSON written by orjson: the cards are validated models already, so no second pass."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime


def service_of(runtime: Runtime, service_id: str) -> Service:
    service = runtime.services.get(service_id)
    if service is None:
        raise UnknownService("no such service; see GET /cds-services")  # the id is not echoed back
    return service


@router.get("/cds-services", response_model=Discovery, response_model_exclude_none=True)
async def discovery(request: Request) -> Discovery:
    """CDS Hooks discovery: the services, their hooks and prefetch templates."""
    runtime = runtime_of(request)
    return Discovery(services=[s.describe() for s in runtime.services.values()])


@router.post("/cds-services/{service_id}", response_model=CDSResponse, response_model_exclude_none=True, responses=ERRORS)
async def invoke(service_id: str, body: CDSRequest, caller: Caller, request: Request) -> Response:
    """Invoke a service: answers `{"cards": [...]}`, with the decision id in `extension`."""
    started = time.perf_counter()
    runtime = runtime_of(request)
    service = service_of(runtime, service_id)
    if body.hook != service.hook:
        sent = body.hook if body.hook in HOOKS else "another hook"  # never echo arbitrary input
        raise BadRequest(f"service {service_id} answers hook {service.hook}, not {sent}")
    try:
        evaluation = await pipeline.answer(
            body,
            service,
            runtime.engines[service.profile],
            runtime.source,
            now=runtime.clock(),
            base_url=runtime.public_base(request),
            fhir_servers=fhir_servers_for(caller, request.app.state.verifier, runtime.settings),
            offload=runtime.offload if request.scope.get(BODY_SIZE_KEY, 0) >= runtime.settings.offload_bytes else None,
        )
    except CDSError as exc:
        metrics.REQUESTS.labels(service_id, str(exc.status_code)).inc()
        failure_id = new_id()
        bind(decision_id=failure_id, error=exc.code)
        runtime.decision_log.record_failure(
            decision_id=failure_id,
            service_id=service_id,
            hook=body.hook,
            hook_instance=body.hookInstance,
            patient_id=body.context.patientId,
            status=exc.status_code,
            error=exc.code,
            detail={"detail": exc.detail, **exc.extra} if exc.extra else exc.detail,
            duration_ms=(time.perf_counter() - started) * 1000,
        )
        raise
    bind(decision_id=evaluation.decision_id, rules=[f.rule.id for f in evaluation.result.fired])
    runtime.decision_log.record_decision(evaluation)
    metrics.child(metrics.REQUESTS, service_id, "200").inc()
    metrics.child(metrics.LATENCY, service_id).observe(time.perf_counter() - started)
    for card in evaluation.cards:
        metrics.child(metrics.CARDS, card["source"]["topic"]["code"]).inc()
    return OrjsonResponse(
        {
            "cards": evaluation.cards,
            "extension": {"decision-id": evaluation.decision_id, "ruleset-version": service.ruleset.version},
        }
    )


@router.post("/cds-services/{service_id}/feedback", response_model=FeedbackReceipt, responses={k: v for k, v in ERRORS.items() if k in (400, 401, 404, 413)})
async def feedback(service_id: str, body: Feedback, caller: Caller, request: Request) -> Response:
    """CDS Hooks feedback on cards this service returned: stored and linked to its decision."""
    runtime = runtime_of(request)
    service_of(runtime, service_id)
    runtime.decision_log.record_feedback(service_id, body)
    for item in body.feedback:
        metrics.FEEDBACK.labels(item.outcome).inc()
    return OrjsonResponse({"received": len(body.feedback)})
