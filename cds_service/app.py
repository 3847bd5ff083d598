"""The FastAPI application: wiring, middleware and the one place errors become HTTP answers."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from cds_service import __version__
from cds_service.api import router
from cds_service.routes import catalog, ops, ui
from cds_service.errors import CDSError
from cds_service.fhir_client import close_shared
from cds_service.limits import BodySizeLimit
from cds_service.runtime import build_runtime
from cds_service.settings import Settings, get_settings

log = logging.getLogger("cds_service")


def _error(status: int, code: str, detail: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": code, "detail": detail})


def _validation_detail(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Where and what, without echoing the client's values back (they may be patient data)."""
    return [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    runtime = build_runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.effective_auth_mode == "off":
            log.warning("JWT verification is OFF (development mode): do not expose this process")
        await runtime.decision_log.start()
        try:
            yield
        finally:
            await runtime.decision_log.stop()
            await close_shared(runtime)
            runtime.close()

    app = FastAPI(
        title="RLS iron CDS Hooks service",
        version=__version__,
        description="CDS Hooks 2.0 service: iron-deficiency work-up and oral-to-IV iron escalation in restless legs syndrome.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.settings = settings

    @app.exception_handler(CDSError)
    async def _cds_error(request: Request, exc: CDSError) -> JSONResponse:
        return _error(exc.status_code, exc.code, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, "invalid-request", _validation_detail(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", extra={"path": request.url.path})
        return _error(500, "internal-error", "the service could not answer; the error was logged")

    app.include_router(router)
    app.include_router(ops.router)
    app.include_router(catalog.router)
    app.include_router(ui.router)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    origins = settings.cors_origin_list
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["authorization", "content-type"],
        )
    return app
