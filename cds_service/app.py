"""The FastAPI application: wiring, middleware and the one place errors become HTTP answers."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.telemetry import TelemetryConfig
from starlette.exceptions import HTTPException as StarletteHTTPException

from cds_service import __version__
from cds_service.http.routes import BODY_MODELS, calls, router
from cds_service.http.auth import CHALLENGE, AuthGate, build_verifier
from cds_service.http.cors import add_cors
from cds_service.http.edge import CatchAll, Edge
from cds_service.errors import CDSError, Unauthorized
from cds_service.http.fastjson import add_direct_routes, component_schemas
from cds_service.http.limits import RequestLimits
from cds_service.observability.logging import configure_logging
from cds_service.http import catalog, ops, ui
from cds_service.runtime import build_runtime
from cds_service.settings import Settings, get_settings

log = logging.getLogger("cds_service")


def _error(status: int, code: str, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": code, "detail": detail}, headers=headers)


HTTP_CODES = {404: "not-found", 405: "method-not-allowed"}


def _validation_detail(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Where and what, without echoing the client's values back (they may be patient data)."""
    return [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]


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

    @app.exception_handler(CDSError)
    async def _cds_error(request: Request, exc: CDSError) -> JSONResponse:
        headers = {"WWW-Authenticate": CHALLENGE} if isinstance(exc, Unauthorized) else None
        return _error(exc.status_code, exc.code, exc.detail, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, "invalid-request", _validation_detail(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "http-error")
        return _error(exc.status_code, code, exc.detail, dict(exc.headers) if exc.headers else None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Type and place only: exception messages and tracebacks can carry patient data.
        log.error("unexpected error", extra={"exc_type": type(exc).__name__})
        return _error(500, "internal-error", "the service could not answer; the error was logged")

    add_direct_routes(app, calls)  # first: the routes called on every chart opening are matched first
    app.include_router(router)
    app.include_router(ops.router)
    app.include_router(catalog.router)
    app.include_router(ui.router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]

    # Added innermost first: Edge ends up outermost, so it sees every answer. Every layer costs
    # something on every request (docs/performance.md), so AuthGate is added only when tokens
    # are verified.
    app.add_middleware(CatchAll)
    app.add_middleware(
        RequestLimits,
        max_bytes=settings.max_body_bytes,
        max_depth=settings.max_json_depth,
        max_entries=settings.max_bundle_entries,
    )
    if verifier is not None:
        app.add_middleware(AuthGate, verifier=verifier)  # before any body is read
    cors = add_cors(app, settings)
    app.add_middleware(Edge, services=set(runtime.services), hsts=(settings.public_url or "").startswith("https://"), vary_origin=cors)
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
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, body in component_schemas(BODY_MODELS).items():
        components.setdefault(name, body)
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
