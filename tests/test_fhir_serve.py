"""`cds-service fhir-serve`: every sample patient, fetched by the service from the sample FHIR
server instead of sent in prefetch, gives its example's outcome (on a day a year ahead: the
server moves the charts' dates as `examples request` does)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from cds_service.tooling.fhir_serve import load_samples, make_server
from cds_service.tooling.offline import load_examples, shift_dates
from tests.conftest import make_app, outcomes
from tests.fhir_server import free_port

DAY = datetime.now(timezone.utc).replace(hour=9, minute=0, second=0, microsecond=0) + timedelta(days=365)
EXAMPLES = load_examples()
SERVICE = {"patient-view": "rls-iron-patient-view", "order-select": "rls-iron-order-select", "order-sign": "rls-iron-order-sign"}


@pytest.fixture(scope="module")
def fhir_url() -> Iterator[str]:
    port = free_port()
    server = make_server(load_samples(today=DAY.date()), "127.0.0.1", port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}/fhir"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> Iterator[TestClient]:
    app = make_app(tmp_path_factory.mktemp("fhir-serve"))  # CDS_FHIR_SERVERS=loopback in the suite
    app.state.runtime.clock = lambda: DAY
    with TestClient(app) as test_client:
        yield test_client


def without_prefetch(example: Any, fhir_url: str) -> dict[str, Any]:
    request = shift_dates(example.cds_request(), (DAY.date() - example.now.date()).days)
    del request["prefetch"]
    request["fhirServer"] = fhir_url
    return request


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_every_example_fetched_from_the_sample_server_gives_its_outcome(client, fhir_url, example):
    response = client.post(f"/cds-services/{SERVICE[example.hook]}", json=without_prefetch(example, fhir_url))
    assert outcomes(response) == sorted(example.expected_for("article"))


def test_the_sample_server_is_read_only_and_answers_browsers(fhir_url):
    patient = next(e for e in EXAMPLES if e.name == "rls-low-ferritin").cds_request()["context"]["patientId"]
    read = httpx.get(f"{fhir_url}/Patient/{patient}")
    assert read.status_code == 200 and read.json()["id"] == patient and read.headers["access-control-allow-origin"] == "*"
    labs = httpx.get(f"{fhir_url}/Observation", params={"patient": patient, "code": "http://loinc.org|2276-4"}).json()
    assert labs["type"] == "searchset" and labs["total"] >= 1
    assert {c["code"] for e in labs["entry"] for c in e["resource"]["code"]["coding"]} == {"2276-4"}
    assert httpx.post(f"{fhir_url}/Patient", json={}).status_code == 405
    assert httpx.get(f"{fhir_url}/Patient/nobody").status_code == 404
    assert httpx.options(f"{fhir_url}/Observation").status_code == 204


def test_it_listens_on_loopback_only():
    with pytest.raises(ValueError, match="loopback only"):
        make_server(load_samples(today=DAY.date()), "0.0.0.0", free_port())
