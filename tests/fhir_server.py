"""A real local FHIR R4 test server: http.server on 127.0.0.1 with a free port, in a background thread.

It serves reads (`Patient/{id}`) and searches (`Observation?patient=...`) from resources it is
given, pages search results with `next` links, records every request with its headers, and can
be told to misbehave per resource type: answer a status, hang, reset the connection, send
garbage, a non-Bundle, a huge body, or delay each answer (to observe concurrency server-side).

    with FhirTestServer([fx.ferritin(32)]) as server:
        server.fault("Observation", status=401)
        ... request with fhirServer=server.url ...
        assert server.requests[0].headers["authorization"] == "Bearer t"
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from cds_service.tooling.fhir_serve import is_about

BASE_PATH = "/fhir"
FHIR_JSON = "application/fhir+json"


@dataclass(frozen=True)
class Recorded:
    """One request the server received."""

    method: str
    path: str
    """Path below the base, e.g. `Observation` or `Patient/pat-1`."""
    query: dict[str, list[str]]
    headers: dict[str, str]
    """Header names lower-cased."""
    raw_path: str = ""
    """The request target as sent, e.g. `/fhir/Observation?patient=pat-1`."""

    @property
    def resource_type(self) -> str:
        return self.path.split("/", 1)[0]


@dataclass
class Fault:
    """How to misbehave for one resource type (or "*" for all)."""

    status: int | None = None
    mode: str | None = None
    """hang | reset | garbage | not-bundle | huge | operation-outcome | redirect"""
    delay: float = 0.0
    times: int | None = None
    """Misbehave this many times, then serve normally (None: always)."""
    body_bytes: int = 11 * 1024 * 1024


@dataclass
class FhirTestServer:
    """The server; use as a context manager. Attributes may be changed while it runs."""

    resources: list[dict[str, Any]] = field(default_factory=list)
    page_size: int | None = None
    """Search results per page (None: one page)."""
    next_base: str | None = None
    """Base URL written into `next` links (default: this server): point it at another server."""
    delay: float = 0.0
    """Seconds every answer waits (observe overlapping requests with `max_in_flight`)."""
    requests: list[Recorded] = field(default_factory=list)
    faults: dict[str, Fault] = field(default_factory=dict)
    max_in_flight: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._in_flight = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> "FhirTestServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()  # releases hanging handlers
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """The FHIR base URL, e.g. http://127.0.0.1:40123/fhir"""
        return f"http://127.0.0.1:{self.port}{BASE_PATH}"

    # configuration ---------------------------------------------------------------------------
    def fault(self, resource_type: str = "*", **kwargs: Any) -> Fault:
        """Misbehave for `resource_type` ("*": every request), e.g. `fault("Observation", status=500)`."""
        self.faults[resource_type] = Fault(**kwargs)
        return self.faults[resource_type]

    def requests_for(self, resource_type: str) -> list[Recorded]:
        return [r for r in self.requests if r.resource_type == resource_type]

    # internals used by the handler -----------------------------------------------------------
    def _record(self, recorded: Recorded) -> None:
        with self._lock:
            self.requests.append(recorded)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _done(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _fault_for(self, resource_type: str) -> Fault | None:
        with self._lock:
            fault = self.faults.get(resource_type) or self.faults.get("*")
            if fault is None:
                return None
            if fault.times is not None:
                if fault.times <= 0:
                    return None
                fault.times -= 1
            return fault


class _Handler(BaseHTTPRequestHandler):
    owner: FhirTestServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        server = self.owner
        parts = urlsplit(self.path)
        path = parts.path[len(BASE_PATH) :].strip("/") if parts.path.startswith(BASE_PATH) else parts.path.strip("/")
        query = parse_qs(parts.query, keep_blank_values=True)
        server._record(Recorded("GET", path, query, {k.lower(): v for k, v in self.headers.items()}, self.path))
        try:
            if server.delay:
                server._stop.wait(server.delay)
            fault = server._fault_for(path.split("/", 1)[0])
            if fault is not None and self._misbehave(fault):
                return
            status, body = self._answer(path, query)
            self._send(status, body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            server._done()

    # normal answers --------------------------------------------------------------------------
    def _answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        segments = path.split("/")
        if len(segments) == 2:
            found = [r for r in self.owner.resources if r.get("resourceType") == segments[0] and r.get("id") == segments[1]]
            if not found:
                return 404, _outcome("not-found", f"{segments[0]}/{segments[1]} is not known")
            return 200, found[0]
        if len(segments) != 1 or not segments[0]:
            return 400, _outcome("not-supported", "only reads and type searches")
        return 200, self._search(segments[0], query)

    def _search(self, resource_type: str, query: dict[str, list[str]]) -> dict[str, Any]:
        patient = (query.get("patient") or [None])[0]
        matches = [
            r for r in self.owner.resources if r.get("resourceType") == resource_type and (patient is None or is_about(r, patient))
        ]
        page_size = self.owner.page_size or max(len(matches), 1)
        offset = int((query.get("_offset") or ["0"])[0])
        page = matches[offset : offset + page_size]
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(matches),
            "link": [{"relation": "self", "url": f"{self.owner.url}/{resource_type}?{urlencode(query, doseq=True)}"}],
            "entry": [
                {"fullUrl": f"{self.owner.url}/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}}
                for r in page
            ],
        }
        if offset + page_size < len(matches):
            following = {k: v for k, v in query.items() if k != "_offset"}
            following["_offset"] = [str(offset + page_size)]
            base = self.owner.next_base or self.owner.url
            bundle["link"].append({"relation": "next", "url": f"{base}/{resource_type}?{urlencode(following, doseq=True)}"})
        return bundle

    def _send(self, status: int, body: dict[str, Any] | bytes, content_type: str = FHIR_JSON) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    # faults ----------------------------------------------------------------------------------
    def _misbehave(self, fault: Fault) -> bool:
        """Act out the fault; False when it only delays and the normal answer should follow."""
        if fault.delay:
            self.owner._stop.wait(fault.delay)
        if fault.status is not None:
            self._send(fault.status, _outcome("processing", f"test server told to answer {fault.status}"))
            return True
        mode = fault.mode
        if mode is None:
            return False
        if mode == "hang":
            self.owner._stop.wait(30)
            self.close_connection = True
            return True
        if mode == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return True
        if mode == "garbage":
            self._send(200, b"<html><body>Service Unavailable</body></html>\x00\xff", "text/html")
            return True
        if mode == "not-bundle":
            self._send(200, {"resourceType": "Patient", "id": "someone"})
            return True
        if mode == "operation-outcome":
            self._send(200, _outcome("too-costly", "search too costly"))
            return True
        if mode == "redirect":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return True
        if mode == "huge":
            # A valid Bundle padded past the client's cap, streamed without Content-Length.
            self.send_response(200)
            self.send_header("Content-Type", FHIR_JSON)
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            self.wfile.write(b'{"resourceType": "Bundle", "type": "searchset", "entry": []')
            chunk = b" " * 65536
            for _ in range(fault.body_bytes // len(chunk) + 1):
                self.wfile.write(chunk)
            self.wfile.write(b"}")
            return True
        raise ValueError(f"unknown fault mode {mode!r}")


def _outcome(code: str, text: str) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": text}]}


def free_port() -> int:
    """A port nothing listens on (bound then released): connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
