"""Hardening middleware (plain ASGI): body size and JSON shape limits.

It rejects before the application sees the request, with the service's JSON error body.
"""

from __future__ import annotations

import json
from array import array
from itertools import accumulate
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cds_service.http.fastjson import PARSED_KEY

BODY_METHODS = {"POST", "PUT", "PATCH"}


async def send_json_error(send: Send, status: int, code: str, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer with `{"error": code, "detail": detail}` from middleware."""
    body = json.dumps({"error": code, "detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": body})


_NOT_QUOTES_OR_BRACKETS = bytes(b for b in range(256) if b not in b'"[]{}')
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 / -1 as signed bytes


def json_depth(body: bytes) -> int:
    """Nesting depth of valid JSON bytes, counted on its brackets outside strings.

    Escapes are dropped (`\\\\` first, then `\\"`), so the remaining quotes delimit strings. Of
    the rest only quotes and brackets are kept, and adjacent `""` pairs removed: a pair is either
    a whole string without brackets, or the end of one string and the start of the next with
    nothing between them, which merges the two strings' brackets into one string. Either way
    every bracket left between a quote and the next one was inside a string, so cutting those
    few strings out leaves exactly the brackets outside strings. The depth is the highest
    running sum of +1 per opening and -1 per closing bracket. All of it runs at C speed.
    """
    unescaped = body
    if b"\\" in body:  # one byte: found by memchr, where each two-byte search costs ~1 ns a byte
        unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    skeleton = unescaped.translate(None, _NOT_QUOTES_OR_BRACKETS).replace(b'""', b"")
    if b'"' in skeleton:  # strings holding brackets (a LOINC display: "Ferritin [Mass/volume]...")
        skeleton = b"".join(skeleton.split(b'"')[::2])
    return max(accumulate(array("b", skeleton.translate(_STEPS))), default=0)


def bundle_entries(request: Any) -> int:
    """Entries of the Bundles the service reads: every prefetch value and context.draftOrders,
    nested Bundles included."""
    if not isinstance(request, dict):
        return 0
    roots: list[Any] = []
    prefetch = request.get("prefetch")
    if isinstance(prefetch, dict):
        roots.extend(prefetch.values())
    context = request.get("context")
    if isinstance(context, dict):
        roots.append(context.get("draftOrders"))
    count = 0
    while roots:
        node = roots.pop()
        if not (isinstance(node, dict) and node.get("resourceType") == "Bundle" and isinstance(node.get("entry"), list)):
            continue
        entries = node["entry"]
        count += len(entries)
        # Only nested Bundles go on: a chart's hundreds of other resources are counted, not visited.
        roots.extend(
            resource
            for entry in entries
            if isinstance(entry, dict) and isinstance(resource := entry.get("resource"), dict) and resource.get("resourceType") == "Bundle"
        )
    return count


class RequestLimits:
    """413 for a body over `max_bytes` (declared or streamed); for JSON bodies, 400 when nested
    deeper than `max_depth` and 413 for more than `max_entries` Bundle entries.

    The entries counted are those of the Bundles in prefetch and draftOrders (nested ones too):
    a chart that large would tie up a worker for seconds. Bodies that are not JSON pass through:
    the route answers those with its own 400. A POST, PUT or PATCH body is buffered once (bounded
    by `max_bytes`), checked, parsed once for the route (`PARSED_KEY`) and replayed to the
    application. One layer for both checks: see cds_service.edge on what a layer costs.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, max_depth: int, max_entries: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self.max_entries = max_entries

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        if scope.get("method") not in BODY_METHODS:  # no route reads a body on other methods
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([], message, receive), send)
                return
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_bytes:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = self._problem(body, scope)
        if problem is not None:
            await send_json_error(send, *problem)
            return
        await self.app(scope, _replay([body], None, receive), send)

    async def _too_large(self, send: Send) -> None:
        await send_json_error(send, 413, "payload-too-large", f"request body over {self.max_bytes} bytes")

    def _problem(self, body: bytes, scope: Scope) -> tuple[int, str, str] | None:
        if not body.strip():
            return None
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            message = str(exc).lower()
            if "recursion" in message or "depth" in message:
                return 400, "json-too-deep", f"JSON nested deeper than {self.max_depth} levels"
            return None
        if json_depth(body) > self.max_depth:
            return 400, "json-too-deep", f"JSON nested deeper than {self.max_depth} levels"
        if bundle_entries(value) > self.max_entries:
            return 413, "too-many-entries", f"more than {self.max_entries} Bundle entries in one request"
        scope[PARSED_KEY] = value  # the route reuses it instead of parsing the body again
        return None


def _replay(chunks: list[bytes], pending: Message | None, receive: Receive) -> Receive:
    """A receive that hands out the buffered body first, then defers to the real one."""
    queue: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}] if chunks else []
    if pending is not None:
        queue.append(pending)

    async def replayed() -> Message:
        if queue:
            return queue.pop(0)
        return await receive()

    return replayed
