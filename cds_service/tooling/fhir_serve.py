"""`cds-service fhir-serve`: the sample bundles as a read-only FHIR R4 server on loopback.

A development aid, never a production FHIR server: it lets the CDS Hooks sandbox (or any
client) run every example patient against `make serve`. It answers what this service's prefetch
templates ask for: reads by id (`Patient/{id}`) and searches by patient (`Observation?patient=X`,
with `code=system|code,...` for Observations), plus `metadata`. Every answer allows any browser
origin (the sandbox fetches from the browser). Dates in the charts are moved to today, as
`cds-service examples request` moves them, so each patient gives its example's outcome on any
date. Stdlib only: http.server on a thread per connection.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cds_service.pipeline.fhir_access import is_loopback_host
from cds_service.tooling.offline import EXAMPLES_DIR, load_examples, load_json, shift_dates

FHIR_JSON = "application/fhir+json"
BASE_PATH = "/fhir"


@dataclass
class SampleStore:
    """The resources of some bundles, by type and id (drafts left out: an EHR does not return them)."""

    resources: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def add_bundle(self, bundle: dict[str, Any], days: int = 0) -> int:
        added = 0
        for entry in bundle.get("entry") or []:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict) or resource.get("status") == "draft" or not isinstance(resource.get("id"), str):
                continue
            self.resources.setdefault(str(resource.get("resourceType")), {})[resource["id"]] = shift_dates(resource, days)
            added += 1
        return added

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        return self.resources.get(resource_type, {}).get(resource_id)

    def search(self, resource_type: str, patient_id: str | None, codes: set[str]) -> list[dict[str, Any]]:
        found = []
        for resource in self.resources.get(resource_type, {}).values():
            if patient_id is not None and not is_about(resource, patient_id):
                continue
            if codes and not (_codes_of(resource) & codes):
                continue
            found.append(resource)
        return found


def load_samples(bundles: list[Path] | None = None, today: date | None = None) -> SampleStore:
    """The given bundles as they are, or (none given) every example's bundle with its dates moved
    from the example's `now` to `today`."""
    store = SampleStore()
    if bundles:
        for path in bundles:
            store.add_bundle(load_json(path))
        return store
    seen: set[Path] = set()
    for example in load_examples(EXAMPLES_DIR):
        if example.file in seen:
            continue
        seen.add(example.file)
        days = (today - example.now.date()).days if today else 0
        store.add_bundle(example.bundle(), days)
    return store


def is_about(resource: dict[str, Any], patient_id: str) -> bool:
    """Whether a resource's subject (or patient) is this patient, as a FHIR search by patient matches."""
    for key in ("subject", "patient"):
        ref = resource.get(key)
        if isinstance(ref, dict) and ref.get("reference") in (f"Patient/{patient_id}", patient_id):
            return True
    return False


def _codes_of(resource: dict[str, Any]) -> set[str]:
    """`system|code` and bare `code` of the resource's code codings, as FHIR token search matches them."""
    out: set[str] = set()
    for coding in (resource.get("code") or {}).get("coding") or []:
        if isinstance(coding, dict) and coding.get("code"):
            out.add(str(coding["code"]))
            if coding.get("system"):
                out.add(f"{coding['system']}|{coding['code']}")
    return out


def _outcome(status: int, text: str) -> dict[str, Any]:
    code = {404: "not-found", 405: "not-supported"}.get(status, "invalid")
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": text}]}


def make_server(store: SampleStore, host: str = "127.0.0.1", port: int = 8080) -> ThreadingHTTPServer:
    """The server (not started). Refuses any address but a loopback one."""
    if not is_loopback_host(host):
        raise ValueError(f"fhir-serve listens on loopback only, not {host}: it is a development aid")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
            pass  # quiet: the sample charts are synthetic, but a request line is no one's business

        def _send(self, status: int, body: dict[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", FHIR_JSON)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Access-Control-Allow-Origin", "*")
            self.end_headers()
            self.wfile.write(payload)

        def do_OPTIONS(self) -> None:  # noqa: N802 (http.server's naming)
            self.send_response(204)
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Access-Control-Allow-Methods", "GET, OPTIONS")
            self.send_header("Access-Control-Allow-Headers", "authorization, content-type, accept")
            self.send_header("Access-Control-Max-Age", "600")
            self.end_headers()

        def do_GET(self) -> None:  # noqa: N802
            parts = urlsplit(self.path)
            path = parts.path[len(BASE_PATH):] if parts.path.startswith(BASE_PATH) else parts.path
            segments = [s for s in path.split("/") if s]
            query = parse_qs(parts.query)
            if segments == ["metadata"]:
                types = [{"type": t, "interaction": [{"code": "read"}, {"code": "search-type"}]} for t in sorted(store.resources)]
                self._send(200, {"resourceType": "CapabilityStatement", "status": "active", "kind": "instance", "fhirVersion": "4.0.1",
                                 "format": ["json"], "rest": [{"mode": "server", "resource": types}]})
            elif len(segments) == 2:
                resource = store.read(*segments)
                self._send(200, resource) if resource else self._send(404, _outcome(404, f"{segments[0]}/{segments[1]} is not known"))
            elif len(segments) == 1:
                patient = (query.get("patient") or query.get("subject") or [None])[0]
                if patient and patient.startswith("Patient/"):
                    patient = patient[len("Patient/"):]
                codes = {c for value in query.get("code", []) for c in value.split(",") if c}
                found = store.search(segments[0], patient, codes)
                base = f"http://{self.headers.get('Host', f'{host}:{port}')}{BASE_PATH}"
                self._send(200, {
                    "resourceType": "Bundle", "type": "searchset", "total": len(found),
                    "entry": [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}} for r in found],
                })
            else:
                self._send(400, _outcome(400, "only reads (Type/id) and type searches (Type?patient=...) are served"))

        def _read_only(self) -> None:
            self._send(405, _outcome(405, "read-only: sample data for development"))

        do_POST = do_PUT = do_PATCH = do_DELETE = _read_only  # noqa: N815

    return ThreadingHTTPServer((host, port), Handler)
