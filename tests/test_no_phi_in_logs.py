"""No patient data in logs or error bodies, for a broad set of requests (good, bad and hostile).

A canary patient with a unique name, birth date, id and lab values goes through every service,
malformed and oversized requests, failed authentication, a failed data fetch and an internal
error. Every log line (formatted as production writes it) and every non-200 body must be free of
the canary's data. The whole test session's logs are scanned as well (tests/phi_scan.py).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from cds_service import pipeline
from cds_service.app import create_app
from cds_service.tooling import fixtures as fx
from tests.conftest import make_app, make_settings
from tests.phi_scan import CaptureHandler, leaks

PATIENT_ID = "canary-pt-8812"
CANARY = {
    "given": re.compile(r"Zebulon"),
    "family": re.compile(r"Quimbleworth"),
    "birth date": re.compile(r"1931-02-03"),
    "patient id": re.compile(PATIENT_ID),
    # Not inside a longer number: a log timestamp such as 02:26:19.875 must not count as 9.87.
    "ferritin value": re.compile(r"(?<![\d.])23\.17(?!\d)"),
    "hemoglobin value": re.compile(r"(?<![\d.])9\.87(?!\d)"),
    "free text": re.compile(r"canary note"),
}


def canary_resources() -> list[dict[str, Any]]:
    return [
        fx.patient(PATIENT_ID, birth_date="1931-02-03", name=("Zebulon", "Quimbleworth")),
        fx.condition("rls", patient_id=PATIENT_ID, note=[{"text": "canary note"}]),
        fx.ferritin(23.17, days_ago=20, patient_id=PATIENT_ID),
        fx.hemoglobin(9.87, days_ago=20, patient_id=PATIENT_ID),
        fx.medication_request("ferrous-sulfate", days_ago=200, patient_id=PATIENT_ID),
    ]


def canary_request(hook: str = "patient-view", **kw: Any) -> dict[str, Any]:
    drafts = [fx.draft_order("ferric-carboxymaltose", patient_id=PATIENT_ID)] if hook != "patient-view" else None
    return fx.cds_request(canary_resources(), hook=hook, patient_id=PATIENT_ID, drafts=drafts, **kw)


@pytest.fixture
def capture():
    handler = CaptureHandler()
    root = logging.getLogger()
    previous = logging.getLogger("cds_service").level
    logging.getLogger("cds_service").setLevel(logging.DEBUG)  # debug lines must be clean too
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)
    logging.getLogger("cds_service").setLevel(previous)


def hostile_requests(client: TestClient) -> list[Any]:
    """Everything a careless or hostile caller might send, with the canary's data inside."""
    responses = []
    services = [s for s in client.get("/cds-services").json()["services"]]
    for service in services:
        responses.append(client.post(f"/cds-services/{service['id']}", json=canary_request(service["hook"])))
    path = "/cds-services/rls-iron-patient-view"
    bad = canary_request()
    bad["hook"] = "Zebulon Quimbleworth 1931-02-03"
    responses.append(client.post(path, json=bad))
    wrong_types = canary_request()
    wrong_types["context"]["patientId"] = {"name": "Zebulon Quimbleworth", "id": PATIENT_ID}
    responses.append(client.post(path, json=wrong_types))
    server = canary_request()
    server["fhirServer"] = f"ftp://Zebulon.Quimbleworth/{PATIENT_ID}"
    responses.append(client.post(path, json=server))
    no_prefetch = canary_request()
    no_prefetch.pop("prefetch")
    responses.append(client.post(path, json=no_prefetch))
    unreachable = canary_request(fhir_server=f"http://127.0.0.1:9/fhir/{PATIENT_ID}")
    unreachable.pop("prefetch")
    responses.append(client.post(path, json=unreachable))
    raw = json.dumps(canary_request())
    responses.append(client.post(path, content=raw[:-40], headers={"Content-Type": "application/json"}))
    responses.append(client.post(path, content=raw, headers={"Content-Type": "text/plain"}))
    deep = canary_request()
    deep["context"]["x"] = json.loads("[" * 80 + '"Zebulon"' + "]" * 80)
    responses.append(client.post(path, json=deep))
    big = canary_request()
    big["prefetch"]["labs"]["entry"] *= 3000
    responses.append(client.post(path, json=big))
    huge = canary_request(padding="Zebulon Quimbleworth " * 300_000)
    responses.append(client.post(path, json=huge))
    responses.append(client.post(f"/cds-services/{PATIENT_ID}", json=canary_request()))
    responses.append(client.get(f"/cds-services/{PATIENT_ID}/Zebulon?birthDate=1931-02-03"))
    feedback = {
        "feedback": [
            {
                "card": str(uuid.uuid4()),
                "outcome": "overridden",
                "outcomeTimestamp": "2026-11-26T09:00:00Z",
                "overrideReason": {"reason": {"code": "other"}, "userComment": "Zebulon Quimbleworth canary note"},
            }
        ]
    }
    responses.append(client.post(path + "/feedback", json=feedback))
    responses.append(client.post(path + "/feedback", json={"feedback": [{"card": "Zebulon", "outcome": "canary note"}]}))
    return responses


def assert_clean(handler: CaptureHandler, responses: list[Any]) -> None:
    assert handler.lines, "nothing was logged: the capture is not working"
    assert leaks(handler.lines, CANARY) == []
    for response in responses:
        if response.status_code != 200:
            found = [what for what, pattern in CANARY.items() if pattern.search(response.text)]
            assert found == [], f"{response.status_code} body echoes {found}: {response.text[:300]}"


def test_requests_good_and_bad_leave_no_patient_data_in_logs_or_error_bodies(tmp_path, capture):
    app = make_app(tmp_path, max_body_bytes=2_000_000, fhir_total_timeout=1.0, fhir_connect_timeout=0.5)
    with TestClient(app) as client:
        responses = hostile_requests(client)
    statuses = {r.status_code for r in responses}
    assert 200 in statuses and 400 in statuses and 413 in statuses and 404 in statuses
    assert_clean(capture, responses)


def test_internal_errors_leave_no_patient_data(tmp_path, capture, monkeypatch):
    def explode(*args: Any, **kwargs: Any) -> None:
        raise ValueError("cannot handle Zebulon Quimbleworth 1931-02-03 ferritin 23.17")

    monkeypatch.setattr(pipeline, "answer", explode)
    app = create_app(make_settings(tmp_path))
    with TestClient(app) as client:
        response = client.post("/cds-services/rls-iron-patient-view", json=canary_request())
    assert response.status_code == 500
    assert_clean(capture, [response])


def test_rejected_tokens_leave_no_claims_in_logs(tmp_path, capture):
    key = ec.generate_private_key(ec.SECP384R1())
    public = json.loads(jwt.get_algorithm_by_name("ES384").to_jwk(key.public_key()))
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps({"clients": [{"iss": "https://ehr.example.org", "jwks": {"keys": [{**public, "kid": "k1"}]}}]}))
    app = create_app(make_settings(tmp_path, auth_mode="jwt", trusted_clients=clients, public_url="https://cds.example.org"))
    now = int(time.time())
    payloads = [
        {"iss": "https://ehr.example.org", "sub": "Zebulon Quimbleworth", "aud": "https://wrong", "iat": now, "exp": now + 60, "jti": PATIENT_ID},
        {"iss": "Zebulon Quimbleworth", "aud": "x", "iat": now, "exp": now + 60, "jti": "1931-02-03"},
        {"iss": "https://ehr.example.org", "aud": "https://cds.example.org/cds-services/rls-iron-patient-view", "iat": now - 900, "exp": now - 300, "jti": PATIENT_ID, "patient": "Zebulon"},
    ]
    with TestClient(app) as client:
        responses = []
        for payload in payloads:
            token = jwt.encode(payload, key, algorithm="ES384", headers={"kid": "k1"})
            responses.append(client.post("/cds-services/rls-iron-patient-view", json=canary_request(), headers={"Authorization": f"Bearer {token}"}))
        responses.append(client.post("/cds-services/rls-iron-patient-view", json=canary_request(), headers={"Authorization": "Bearer Zebulon.Quimbleworth.1931"}))
    assert {r.status_code for r in responses} == {401}
    assert_clean(capture, responses)


@pytest.mark.parametrize("opentelemetry", [False, True])
def test_fastapi_telemetry_never_logs_exceptions_or_request_values(tmp_path, opentelemetry):
    """FastAPI's own OpenTelemetry logs carry exception messages and the values of a failed
    validation: off in every configuration. Its spans and metrics follow CDS_OPENTELEMETRY."""
    app = create_app(make_settings(tmp_path, opentelemetry=opentelemetry))
    config = app._telemetry  # FastAPI keeps the configuration it was given here
    assert config["logs"] is False
    assert config["tracing"] is opentelemetry and config["metrics"] is opentelemetry
