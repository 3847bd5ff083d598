"""The FastAPI application: composes the routers, the middleware and the one place errors become HTTP answers."""

from __future__ import annotations

import gc
import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.telemetry import TelemetryConfig
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from cds_service import __version__
from cds_service.errors import CDSError, Unauthorized
from cds_service.http import catalog, ops, routes, ui
from cds_service.http.auth import CHALLENGE, build_verifier
from cds_service.http.limits import BodyLimits
from cds_service.http.middleware import RequestGuard
from cds_service.observability.logging import configure_logging
from cds_service.runtime import build_runtime
from cds_service.settings import Settings, get_settings

log = logging.getLogger("cds_service")


def _error(status: int, code: str, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": code, "detail": detail, **extra}, headers=headers)


HTTP_CODES = {404: "not-found", 405: "method-not-allowed"}


def _fields(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Where and what, without echoing the client's values back (they may be patient data)."""
    return [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]


def _validation_sentence(request: Request, fields: list[dict[str, Any]]) -> str:
    """One sentence for a request FastAPI could not read: the content type, the JSON, or the first field at fault."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    is_json = content_type == "application/json" or (content_type.startswith("application/") and content_type.endswith("+json"))
    if not is_json and any(f["loc"] == ["body"] for f in fields):
        sent = f"Content-Type {content_type}" if content_type else "no Content-Type"
        return f"the body was sent with {sent}: send it as JSON with Content-Type: application/json"
    first = fields[0] if fields else {"loc": [], "msg": "not a valid request", "type": ""}
    if first["type"] == "json_invalid":
        return "the body is not valid JSON; send the request as one JSON object"
    if first["loc"] == ["body"]:
        return "the body is empty; send the request as one JSON object" if first["type"] == "missing" else "the body must be one JSON object"
    where = ".".join(str(part) for part in first["loc"][1:] if part != "body") or "the body"
    more = f" ({len(fields) - 1} more under fields)" if len(fields) > 1 else ""
    return f"{where}: {first['msg'][:1].lower()}{first['msg'][1:]}{more}"


def create_app(settings: Settings | None = None) -> FastAPI:
    """The application. Raises StartupRefused (cds_service.auth) on an unsafe security configuration."""
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_json)
    verifier = build_verifier(settings)
    runtime = build_runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.effective_auth_mode == "off":
            log.warning("JWT verification is OFF: do not expose this process")
        if not settings.development and settings.default_patient_key:
            log.warning("CDS_PATIENT_KEY_SECRET is not set: decision-log patient keys use the public development key")
        await runtime.decision_log.start()
        # What start-up built (rules, compiled conditions, schemas, value sets) lives as long as the
        # process: frozen, the collector no longer walks it on every full collection, which showed
        # as p99 pauses of tens of milliseconds under load.
        gc.freeze()
        app.state.accepting = True
        try:
            yield
        finally:
            app.state.accepting = False  # /readyz turns 503 while in-flight requests finish
            await runtime.decision_log.stop()
            await runtime.fhir.aclose()
            runtime.close()

    app = FastAPI(
        title="RLS iron CDS Hooks service",
        version=__version__,
        description="CDS Hooks 2.0 service: iron-deficiency work-up and oral-to-IV iron escalation in restless legs syndrome.",
        lifespan=lifespan,
        telemetry=telemetry_config(settings),
    )
    app.state.runtime = runtime
    app.state.settings = settings
    app.state.verifier = verifier
    app.state.accepting = False

    async def error_answer(request: Request, exc: Exception) -> JSONResponse:
        """The one place an exception becomes an HTTP answer (anything else is RequestGuard's 500)."""
        if isinstance(exc, CDSError):
            headers = {"WWW-Authenticate": CHALLENGE} if isinstance(exc, Unauthorized) else None
            return _error(exc.status_code, exc.code, str(exc.detail), headers, **exc.extra)
        if isinstance(exc, RequestValidationError):
            fields = _fields(exc)
            return _error(400, "invalid-request", _validation_sentence(request, fields), fields=fields)
        assert isinstance(exc, StarletteHTTPException)
        return _error(exc.status_code, HTTP_CODES.get(exc.status_code, "http-error"), str(exc.detail), dict(exc.headers) if exc.headers else None)

    for handled in (CDSError, RequestValidationError, StarletteHTTPException):
        app.add_exception_handler(handled, error_answer)

    for router in (routes.router, ops.router, catalog.router, ui.router):
        app.include_router(router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]

    # Added innermost first. RequestGuard checks tokens and limits and puts its headers and its
    # JSON 500 on every answer; CORS, outermost, lets a browser read all of them.
    app.add_middleware(
        RequestGuard,
        max_bytes=settings.max_body_bytes,
        limits=BodyLimits.of(settings),
        offload_bytes=settings.offload_bytes,
        offload=runtime.offload,
        services=set(runtime.services),
        verifier=verifier,
        hsts=(settings.public_url or "").startswith("https://"),
    )
    origins = settings.cors_origin_list
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["authorization", "content-type", "x-request-id"],
            expose_headers=["x-request-id"],
            max_age=600,
            # Chrome's preflight from a public page (the CDS Hooks sandbox) to localhost asks this.
            allow_private_network=settings.development,
        )
    return app


def telemetry_config(settings: Settings) -> TelemetryConfig:
    """FastAPI's own OpenTelemetry: spans and HTTP metrics only when asked for (CDS_OPENTELEMETRY).

    Its logs stay off in every case: they carry exception messages and, for validation failures,
    the values sent, which can be patient data. With all three off, FastAPI no longer looks for
    configured providers on every request.
    """
    on = settings.opentelemetry
    return {"tracing": on, "metrics": on, "operation_spans": on, "logs": False}


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, saying what the service really answers: 400 (not 422) with ErrorBody."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.get("responses", {})
            if responses.pop("422", None) is not None and "400" not in responses:
                responses["400"] = {"description": "invalid request", "content": {"application/json": {"schema": error_ref}}}
    for name in ("HTTPValidationError", "ValidationError"):
        schema.get("components", {}).get("schemas", {}).pop(name, None)
    app.openapi_schema = schema
    return schema
