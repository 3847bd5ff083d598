"""A FHIR server that misbehaves: the service answers 412 within its time budget, every time,
and keeps serving other requests meanwhile.

The fault server is a real TCP server on loopback speaking just enough HTTP/1.1. The first
path segment of `fhirServer` picks the fault (hang, drip, reset, 500, garbage, huge bundles,
endless paging...). The service runs under a real uvicorn with small FHIR timeouts.
"""

from __future__ import annotations

import json
import socket
import socketserver
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import httpx
import pytest

from cds_service.app import create_app
from cds_service.tooling import fixtures as fx
from cds_service.tooling.fixtures import DEFAULT_NOW
from tests.conftest import make_settings
from tests.live_server import live_server

CONNECT, READ, TOTAL = 0.5, 1.0, 3.0
SLACK = 5.0
"""Generous: this bounds a hang (the service must not wait on the FHIR server), it is not a speed test."""
MAX_ENTRIES = 100
SERVICE = "/cds-services/rls-iron-patient-view"


def _bundle(entries: int, next_url: str | None = None) -> dict[str, Any]:
    bundle: dict[str, Any] = fx.bundle([fx.ferritin(30 + i % 7, days_ago=20 + i) for i in range(entries)])
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


class FaultyFhirServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the service opens one connection per prefetch key at once

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.requests: list[str] = []
        super().__init__(("127.0.0.1", 0), FaultHandler)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class FaultHandler(socketserver.StreamRequestHandler):
    server: FaultyFhirServer

    def handle(self) -> None:
        request_line = self.rfile.readline().decode("latin-1").strip()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # headers
        path = request_line.split(" ")[1] if " " in request_line else "/"
        self.server.requests.append(path)
        fault = path.strip("/").split("/")[0]
        getattr(self, f"fault_{fault.replace('-', '_')}", self.fault_ok)(path)

    def respond(self, status: int, body: bytes, content_type: str = "application/fhir+json", extra: str = "") -> None:
        head = f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n"
        self.wfile.write(head.encode() + body)

    def fault_ok(self, path: str) -> None:
        if "/Patient/" in path:
            self.respond(200, json.dumps(fx.patient()).encode())
        else:
            self.respond(200, json.dumps(_bundle(1)).encode())

    def fault_hang(self, path: str) -> None:
        self.server.stop.wait(60)

    def fault_drip(self, path: str) -> None:
        """Headers at once, then one byte every 0.3 s: never idle long enough for a read timeout."""
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nContent-Length: 100000\r\n\r\n")
        while not self.server.stop.wait(0.3):
            try:
                self.wfile.write(b" ")
                self.wfile.flush()
            except OSError:
                return

    def fault_reset(self, path: str) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def fault_close(self, path: str) -> None:
        self.connection.shutdown(socket.SHUT_RDWR)

    def fault_error(self, path: str) -> None:
        outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception"}]}
        self.respond(500, json.dumps(outcome).encode())

    def fault_garbage(self, path: str) -> None:
        self.respond(200, b"\x00\xff{{{ not json at all <html>")

    def fault_html(self, path: str) -> None:
        self.respond(200, b"<html><body>Login required</body></html>", "text/html")

    def fault_half_json(self, path: str) -> None:
        body = json.dumps(_bundle(5)).encode()
        self.respond(200, body[: len(body) // 2])

    def fault_huge_bundle(self, path: str) -> None:
        self.respond(200, json.dumps(_bundle(MAX_ENTRIES * 3)).encode())

    def fault_huge_body(self, path: str) -> None:
        """A chunked body without length that goes on past any sane size (12 MB)."""
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b" " * 65536
        try:
            for _ in range(200):
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            return

    def fault_endless_pages(self, path: str) -> None:
        if "/Patient/" in path:
            return self.fault_ok(path)
        self.respond(200, json.dumps(_bundle(1, next_url=f"{self.server.base}{path.split('?')[0]}?page=more")).encode())

    def fault_wrong_resource(self, path: str) -> None:
        resource = fx.patient("someone-else") if "/Patient/" in path else {"resourceType": "OperationOutcome", "issue": []}
        self.respond(200, json.dumps(resource).encode())

    def fault_redirect(self, path: str) -> None:
        self.respond(302, b"", extra="Location: http://169.254.169.254/latest/meta-data\r\n")


FAULTS = [
    "hang", "drip", "reset", "close", "error", "garbage", "html", "half-json",
    "huge-bundle", "huge-body", "endless-pages", "wrong-resource", "redirect",
]


@pytest.fixture(scope="module")
def fhir() -> Iterator[FaultyFhirServer]:
    server = FaultyFhirServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.stop.set()
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("faults")
    settings = make_settings(
        tmp, fhir_connect_timeout=CONNECT, fhir_read_timeout=READ, fhir_total_timeout=TOTAL,
        max_bundle_entries=MAX_ENTRIES, fhir_max_pages=5,
    )
    app = create_app(settings)
    app.state.runtime.clock = lambda: DEFAULT_NOW
    with live_server(app) as url:
        yield url


def fetching_request(fhir_server: str) -> dict[str, Any]:
    """A request with no prefetch at all: every key must come from the FHIR server."""
    request = fx.cds_request([], fhir_server=fhir_server)
    request.pop("prefetch")
    return request


def complete_request() -> dict[str, Any]:
    return fx.cds_request([fx.condition("rls"), fx.ferritin(32, days_ago=20)])


def timed_post(url: str, body: dict[str, Any]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.post(url, json=body, timeout=TOTAL + SLACK + 10)
    return response, time.monotonic() - started


def test_a_healthy_fhir_server_is_used(service, fhir):
    response, _ = timed_post(service + SERVICE, fetching_request(f"{fhir.base}/ok"))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_is_a_412_within_the_budget(service, fhir, fault):
    response, elapsed = timed_post(service + SERVICE, fetching_request(f"{fhir.base}/{fault}"))
    assert response.status_code == 412, response.text
    assert response.json()["error"] == "prefetch-failed"
    assert elapsed < TOTAL + SLACK, f"{fault}: answered after {elapsed:.1f} s"
    assert "Traceback" not in response.text


def test_the_service_keeps_serving_while_fetches_hang(service, fhir):
    with ThreadPoolExecutor(max_workers=8) as pool:
        # "drip" keeps each fetch alive for the whole budget (TOTAL): these requests are stuck.
        stuck = [pool.submit(timed_post, service + SERVICE, fetching_request(f"{fhir.base}/drip")) for _ in range(4)]
        time.sleep(0.2)  # the stuck fetches are now in flight
        served = [timed_post(service + SERVICE, complete_request()) for _ in range(3)]
        assert all(response.status_code == 200 for response, _ in served)
        assert not any(future.done() for future in stuck), "healthy requests were answered only after the stuck ones"
        results = [future.result() for future in stuck]
    assert all(response.status_code == 412 for response, _ in results)
    assert httpx.get(service + "/readyz").status_code == 200


def test_fetch_failures_are_counted_by_reason(service, fhir):
    timed_post(service + SERVICE, fetching_request(f"{fhir.base}/error"))
    text = httpx.get(service + "/metrics").text
    assert 'cds_fhir_fetch_failures_total{key="labs",reason="http-500"}' in text
