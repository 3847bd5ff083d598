"""The outermost middleware, and the innermost safety net.

`Edge` does, in one layer, what every answer needs: the request id (X-Request-ID), the
security headers, one access log line and the HTTP metrics, and a JSON 500 if a middleware
itself fails. It is one layer on purpose: under load each pure-ASGI layer (a coroutine frame
and a `send` wrapper on every request) cost the service about 2 % of its throughput
(docs/performance.md).

The access line has method, route, status, duration, request id, service id and (when the
route bound them) decision id and rules fired: never bodies, query strings, tokens or
exception messages (they can hold patient data).
"""

from __future__ import annotations

import logging
import re
import time
import traceback
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cds_service.observability import metrics
from cds_service.ids import new_request_id
from cds_service.http.limits import send_json_error
from cds_service.observability.logging import close_context, current_context, open_context

log = logging.getLogger("cds_service.access")

INTERNAL = (500, "internal-error", "the service could not answer; the error was logged")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

API_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# FastAPI's /docs and /redoc load their bundles from a CDN and start them with an inline script.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; font-src 'self' https://fonts.gstatic.com; "
    "worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
DOCS_PATHS = ("/docs", "/redoc")


def _request_id(scope: Scope) -> str:
    """The caller's X-Request-ID when it is a plain token, else a fresh one."""
    for name, value in scope.get("headers") or []:
        if name == b"x-request-id":
            candidate = value.decode("latin-1").strip()
            if REQUEST_ID.match(candidate):
                return candidate
            break
    return new_request_id()


def _where(exc: BaseException) -> list[str]:
    return [f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno} {f.name}" for f in traceback.extract_tb(exc.__traceback__)][-12:]


def security_headers(csp: str, hsts: bool) -> list[tuple[bytes, bytes]]:
    """No sniffing, no referrer, no framing, a CSP, and HSTS when served over https."""
    added = [
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
        (b"content-security-policy", csp.encode()),
    ]
    if hsts:
        added.append((b"strict-transport-security", b"max-age=31536000"))
    return added


class Edge:
    """Request id in and out, security headers (no-store except /static), access log, HTTP
    metrics, and a JSON 500 for errors raised by a middleware (CatchAll handles the application's).

    With `vary_origin` (CORS configured), every answer says `Vary: Origin`: requests without an
    `Origin` skip the CORS layer (cds_service.cors), which would otherwise have said it.
    """

    def __init__(self, app: ASGIApp, services: set[str] | None = None, hsts: bool = False, vary_origin: bool = False) -> None:
        self.app = app
        self.services = services or set()
        vary = [(b"vary", b"Origin")] if vary_origin else []
        self._api_headers = security_headers(API_CSP, hsts) + vary
        self._docs_headers = security_headers(DOCS_CSP, hsts) + vary

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        token = open_context(request_id=request_id)
        started = time.perf_counter()
        path: str = scope.get("path", "")
        added = self._docs_headers if path.startswith(DOCS_PATHS) else self._api_headers
        cacheable = path.startswith("/static/")
        status = 500
        response_started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                headers = [(n, v) for n, v in message.get("headers") or () if n.lower() != b"x-request-id"]
                present = {name.lower() for name, _ in headers}
                headers.extend(header for header in added if header[0] not in present)
                if not cacheable and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:  # raised by a middleware itself: CatchAll handles the application's
            log.error("unhandled error", extra={"exc_type": type(exc).__name__, "exc_where": _where(exc)})
            status = 500
            if not response_started:
                await send_json_error(send_with_headers, *INTERNAL)
        finally:
            self._record(scope, status, time.perf_counter() - started)
            close_context(token)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None)
        params: dict[str, Any] = scope.get("path_params") or {}
        service = params.get("service_id")
        service_label = service if service in self.services else "-"
        method = scope.get("method", "")
        route_label = route or "<unmatched>"
        metrics.child(metrics.HTTP_REQUESTS, method, route_label, service_label, str(status)).inc()
        metrics.child(metrics.HTTP_LATENCY, method, route_label, service_label).observe(seconds)
        level = logging.WARNING if status >= 500 else logging.INFO
        if not log.isEnabledFor(level):
            return
        fields: dict[str, Any] = {
            "method": method,
            "route": route_label,
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
        }
        if service_label != "-":
            fields["service"] = service_label
        context = current_context()
        fields = {k: v for k, v in fields.items() if k not in context}
        log.log(level, "request", extra=fields)


class TrackedSend:
    """`send`, remembering whether the response has started: after that, a middleware that
    catches an error can no longer answer with its own JSON body."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self.send(message)


class CatchAll:
    """Innermost: turns any exception the application lets out into a JSON 500 that still passes
    through CORS and Edge (headers, access log). Logs type and place, never the message."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracked = TrackedSend(send)
        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            log.error("unhandled error", extra={"exc_type": type(exc).__name__, "exc_where": _where(exc)})
            if tracked.started:
                raise
            await send_json_error(send, *INTERNAL)
