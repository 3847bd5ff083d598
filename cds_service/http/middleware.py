"""The one HTTP middleware: what every answer needs, and what every request may hold.

For every request it
- takes the caller's X-Request-ID (or makes one) and returns it;
- verifies the bearer token of a CDS call or feedback before anything else, so that an
  unauthenticated caller cannot make the service read or parse a body (401; the routes' `Caller`
  dependency returns the claims verified here);
- refuses, before the application reads anything, a body over `max_bytes` (declared or streamed:
  413, after reading and dropping the rest of the body so that any client can read it), and one
  that breaks a `BodyLimits` limit (depth 400; Bundle entries, array items, string size, elements
  per resource 413), with the service's JSON error body, and hands the body it parsed for that
  on to the route (`PARSED_BODY_KEY`), which validates it without parsing the bytes again;
- adds the security headers (no sniffing, no referrer, no framing, a CSP, HSTS over https) and
  `Cache-Control: no-store` except under /static;
- answers anything the application or this layer lets out with a JSON 500 that names no patient
  data, logging the exception's type and place only;
- writes one access line and the HTTP metrics: method, route, status, duration, request id,
  service, and the decision id and rules fired when the route bound them. Never bodies, query
  strings, tokens or exception messages.

Only Starlette's CORSMiddleware is outside it, so that a browser (the CDS Hooks sandbox) can read
its 401, 413 and 500 too.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import traceback
from concurrent.futures import Executor
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cds_service.errors import CDSError
from cds_service.http.auth import CHALLENGE, CLAIMS_KEY, PROTECTED, AuthFailure, JWTVerifier, verify_request
from cds_service.http.limits import UNPARSED, BodyLimits, check_body, send_json_error
from cds_service.ids import new_request_id
from cds_service.observability import metrics
from cds_service.observability.logging import close_context, current_context, open_context

log = logging.getLogger("cds_service.access")

INTERNAL = (500, "internal-error", "the service could not answer; the error was logged")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
BODY_METHODS = {"POST", "PUT", "PATCH"}
DRAIN_FACTOR = 4
BODY_SIZE_KEY = "cds.body_bytes"
"""Where the guard leaves the size of the body it read (ASGI scope): a large one is answered off the event loop."""
PARSED_BODY_KEY = "cds.body_json"
"""Where the guard leaves the JSON body it parsed for its limits, so that the route does not parse it again."""

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


def security_headers(csp: str, hsts: bool) -> list[tuple[bytes, bytes]]:
    added = [
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
        (b"content-security-policy", csp.encode()),
    ]
    if hsts:
        added.append((b"strict-transport-security", b"max-age=31536000"))
    return added


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


class RequestGuard:
    """Request id, limits, security headers, the JSON 500, the access line and HTTP metrics."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        limits: BodyLimits,
        offload_bytes: int,
        offload: Executor | None = None,
        services: set[str],
        verifier: JWTVerifier | None = None,
        hsts: bool = False,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.max_bytes = max_bytes
        self.drain_bytes = DRAIN_FACTOR * max_bytes
        """How much of an over-limit body is read and dropped so that the client can read the 413."""
        self.limits = limits
        self.offload_bytes = offload_bytes
        self.offload = offload
        self.services = services
        self._api_headers = security_headers(API_CSP, hsts)
        self._docs_headers = security_headers(DOCS_CSP, hsts)

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
            if not await self._authenticated(scope, send_with_headers):
                return
            receive = await self._checked(scope, receive, send_with_headers)
            if receive is not None:
                await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            log.error("unhandled error", extra={"exc_type": type(exc).__name__, "exc_where": _where(exc)})
            status = 500
            if not response_started:
                await send_json_error(send_with_headers, *INTERNAL)
        finally:
            self._record(scope, status, time.perf_counter() - started)
            close_context(token)

    async def _authenticated(self, scope: Scope, send: Send) -> bool:
        """False (a 401 sent) when a protected route's token is not acceptable."""
        if self.verifier is None or scope.get("method") != "POST" or not PROTECTED.match(scope.get("path", "")):
            return True
        try:
            scope[CLAIMS_KEY] = await verify_request(Request(scope), self.verifier)
        except AuthFailure as exc:
            await send_json_error(send, exc.status_code, exc.code, str(exc.detail), [(b"www-authenticate", CHALLENGE.encode())])
            return False
        except CDSError as exc:  # the replay check's database is away (503)
            await send_json_error(send, exc.status_code, exc.code, str(exc.detail))
            return False
        return True

    async def _checked(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """The request's `receive`, with its body read, checked and replayed; None when refused."""
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            # Refused before anything is kept; what was sent is read and dropped so the client reads the 413.
            await self._too_large(send, receive, already=0, declared=int(declared))
            return None
        if scope.get("method") not in BODY_METHODS:  # no route reads a body on other methods
            return receive
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return _replay(None, message, receive)
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_bytes:  # a chunked body is cut here
                chunks.clear()
                await self._too_large(send, receive, already=received, declared=None, more=message.get("more_body", False))
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if len(body) >= self.offload_bytes and self.offload is not None:  # checked off the loop: the loop keeps serving
            problem, document = await asyncio.get_running_loop().run_in_executor(self.offload, check_body, body, self.limits)
        else:
            problem, document = check_body(body, self.limits)
        if problem is not None:
            await send_json_error(send, *problem)
            return None
        scope[BODY_SIZE_KEY] = len(body)
        if document is not UNPARSED:
            scope[PARSED_BODY_KEY] = document
        return _replay(body, None, receive)

    async def _too_large(self, send: Send, receive: Receive, *, already: int, declared: int | None, more: bool = True) -> None:
        """413, readable by clients that send the whole body before reading the answer.

        Such clients (urllib, requests, Java's HttpClient) see a reset instead of the answer when
        the server closes with body bytes unread. So the rest of the body is read and dropped,
        up to `drain_bytes` in all (a body declared larger is answered at once), and the
        connection is closed after the answer.
        """
        if more and (declared is None or declared <= self.drain_bytes):
            drained = already
            while drained <= self.drain_bytes:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away: nobody to answer
                drained += len(message.get("body", b""))
                if not message.get("more_body", False):
                    break
        await send_json_error(send, 413, "payload-too-large", f"request body over {self.max_bytes} bytes", [(b"connection", b"close")])

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
        fields: dict[str, Any] = {"method": method, "route": route_label, "status": status, "duration_ms": round(seconds * 1000, 2)}
        if service_label != "-":
            fields["service"] = service_label
        context = current_context()
        log.log(level, "request", extra={k: v for k, v in fields.items() if k not in context})


def _replay(body: bytes | None, pending: Message | None, receive: Receive) -> Receive:
    """A receive that hands out the buffered body (or the message that interrupted it) first."""
    queue: list[Message] = [{"type": "http.request", "body": body, "more_body": False}] if body is not None else []
    if pending is not None:
        queue.append(pending)

    async def replayed() -> Message:
        if queue:
            return queue.pop(0)
        return await receive()

    return replayed
