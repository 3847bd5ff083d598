"""CORS for the browsers that call the service (the CDS Hooks sandbox, the test page).

Starlette's CORSMiddleware wraps `send` on every request, including those without an `Origin`
header, to which it adds nothing but `Vary: Origin`. An EHR's server-to-server calls never send
`Origin`, so here they skip the layer, and `Edge` adds the `Vary: Origin` itself (an answer
still depends on the origin asking, for any cache between). Under load the layer cost about
2 % of the typical request's throughput (docs/performance.md).
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Receive, Scope, Send

from cds_service.settings import Settings


class BrowserCORS(CORSMiddleware):
    """CORSMiddleware for requests that carry an `Origin` header; others pass straight through."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not any(name == b"origin" for name, _ in scope["headers"]):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def add_cors(app: FastAPI, settings: Settings) -> bool:
    """CORS for the configured origins (any in development mode); False when none is allowed."""
    origins = settings.cors_origin_list
    if not origins:
        return False
    app.add_middleware(
        BrowserCORS,
        allow_origins=origins,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["authorization", "content-type", "x-request-id"],
        expose_headers=["x-request-id"],
        max_age=600,
        # Chrome's preflight from a public page (the CDS Hooks sandbox) to localhost asks this.
        allow_private_network=settings.development,
    )
    return True
