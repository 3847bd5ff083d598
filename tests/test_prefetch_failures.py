"""When data the hook needs cannot be obtained, the answer is 412 naming the key and why: never a 500,
never cards computed on partial data, and the EHR's token never leaves `fhirServer`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from fhir_mappings.prefetch_keys import prefetch_templates
from cds_service.tooling import fixtures as fx
from tests.conftest import make_app, outcomes
from tests.fhir_server import FhirTestServer, free_port

SERVICE = "/cds-services/rls-iron-patient-view"
TOKEN = "ehr-issued-access-token-456"
FAST = {"fhir_connect_timeout": 1.0, "fhir_read_timeout": 1.0, "fhir_total_timeout": 3.0}
"""Short enough that a hanging server costs a second, long enough for a loaded test machine."""


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One app for the module (building one compiles the rules)."""
    with client_with(tmp_path_factory.mktemp("prefetch-failures")) as test_client:
        yield test_client


@pytest.fixture
def fhir() -> Iterator[FhirTestServer]:
    with FhirTestServer([fx.patient(), fx.ferritin(32, days_ago=20)]) as server:
        yield server


def client_with(tmp_path: Path, **overrides: Any) -> TestClient:
    app = make_app(tmp_path, **{**FAST, **overrides})
    return TestClient(app)


def labs_absent(fhir_server: str | None, token: str | None = TOKEN, absent: tuple[str, ...] = ("labs",)) -> dict[str, Any]:
    request = fx.cds_request([fx.condition("rls")], fhir_server=fhir_server)
    for key in absent:
        request["prefetch"].pop(key)
    if token:
        request["fhirAuthorization"] = {"access_token": token, "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read", "subject": "rls-iron"}
    return request


def failed(response) -> list[dict[str, str]]:
    """The failures of a 412 answer, as a list."""
    assert response.status_code == 412, response.text
    body = response.json()
    assert body["error"] == "prefetch-failed"
    assert isinstance(body["detail"], str) and body["detail"].startswith("prefetch key")
    return body["failures"]


def failure_count(key: str, reason: str) -> float:
    return REGISTRY.get_sample_value("cds_fhir_fetch_failures_total", {"key": key, "reason": reason}) or 0.0


def test_absent_keys_without_fhir_server_are_412_naming_each_key(client):
    request = labs_absent(None, absent=("labs", "conditions"))
    before = failure_count("labs", "no-fhir-server")

    failures = failed(client.post(SERVICE, json=request))

    assert sorted(f["key"] for f in failures) == ["conditions", "labs"]
    assert {f["reason"] for f in failures} == {"no-fhir-server"}
    assert failure_count("labs", "no-fhir-server") == before + 1


def test_no_prefetch_at_all_and_no_fhir_server_is_412_for_every_key(client):
    request = labs_absent(None)
    del request["prefetch"]

    failures = failed(client.post(SERVICE, json=request))

    assert sorted(f["key"] for f in failures) == sorted(prefetch_templates())


def test_unreachable_fhir_server_is_412(client):
    failures = failed(client.post(SERVICE, json=labs_absent(f"http://127.0.0.1:{free_port()}/fhir")))
    assert failures == [{"key": "labs", "reason": "unreachable", "message": failures[0]["message"]}]


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ({"status": 401}, "http-401"),
        ({"status": 403}, "http-403"),
        ({"status": 404}, "http-404"),
        ({"status": 500}, "http-500"),
        ({"status": 503}, "http-503"),
        ({"mode": "redirect"}, "http-302"),
        ({"mode": "garbage"}, "not-json"),
        ({"mode": "not-bundle"}, "not-a-bundle"),
        ({"mode": "operation-outcome"}, "not-a-bundle"),
        ({"mode": "reset"}, "unreachable"),
        ({"mode": "hang"}, "timeout"),
        ({"mode": "huge"}, "too-large"),
    ],
    ids=lambda v: v if isinstance(v, str) else next(iter(v.values())).__str__(),
)
def test_each_failure_of_the_fhir_server_is_412(client, fhir, fault, reason):
    fhir.fault("Observation", **fault)
    before = failure_count("labs", reason)

    failures = failed(client.post(SERVICE, json=labs_absent(fhir.url)))

    assert [(f["key"], f["reason"]) for f in failures] == [("labs", reason)]
    assert failure_count("labs", reason) == before + 1
    assert len(fhir.requests_for("Observation")) == 1  # no retry storm, no redirect followed


def test_a_patient_read_answering_404_is_412(client, fhir):
    """The service cannot confirm the patient exists: it does not advise on them."""
    fhir.resources = [r for r in fhir.resources if r["resourceType"] != "Patient"]
    request = labs_absent(fhir.url, absent=("patient",))

    failures = failed(client.post(SERVICE, json=request))

    assert [(f["key"], f["reason"]) for f in failures] == [("patient", "http-404")]
    assert [r.path for r in fhir.requests] == ["Patient/pat-1"]


def test_a_patient_read_answering_another_patient_is_412(client, fhir):
    fhir.fault("Patient", mode="not-bundle")  # answers Patient/someone
    failures = failed(client.post(SERVICE, json=labs_absent(fhir.url, absent=("patient",))))
    assert [(f["key"], f["reason"]) for f in failures] == [("patient", "unexpected-resource")]


def test_a_patient_id_that_is_no_fhir_id_cannot_be_read(client, fhir):
    request = fx.cds_request([], patient_id="..", fhir_server=fhir.url)
    request["prefetch"].pop("patient")

    failures = failed(client.post(SERVICE, json=request))

    assert [(f["key"], f["reason"]) for f in failures] == [("patient", "invalid-patient-id")]
    assert fhir.requests == []


def test_several_failing_keys_are_all_reported(client, fhir):
    fhir.fault("Observation", status=500)
    fhir.fault("Condition", status=401)
    request = labs_absent(fhir.url, absent=("labs", "conditions", "allergies"))

    failures = failed(client.post(SERVICE, json=request))

    assert sorted((f["key"], f["reason"]) for f in failures) == [("conditions", "http-401"), ("labs", "http-500")]


def test_more_pages_than_the_bound_is_412_not_a_truncated_answer(tmp_path, fhir):
    fhir.page_size = 1
    fhir.resources += [fx.ferritin(40, days_ago=100), fx.ferritin(50, days_ago=200)]
    with client_with(tmp_path, fhir_max_pages=2) as client:
        failures = failed(client.post(SERVICE, json=labs_absent(fhir.url)))
    assert [(f["key"], f["reason"]) for f in failures] == [("labs", "too-many-pages")]
    assert len(fhir.requests_for("Observation")) == 2


def test_more_entries_than_the_bound_is_412(tmp_path, fhir):
    fhir.resources += [fx.ferritin(40 + i, days_ago=30 + i) for i in range(5)]
    with client_with(tmp_path, max_bundle_entries=4) as client:
        failures = failed(client.post(SERVICE, json=labs_absent(fhir.url)))
    assert [(f["key"], f["reason"]) for f in failures] == [("labs", "too-many-entries")]


def test_a_next_link_to_another_host_is_not_followed_and_gets_no_token(client, fhir):
    fhir.page_size = 1
    fhir.resources += [fx.ferritin(150, days_ago=200)]
    with FhirTestServer([fx.ferritin(32, days_ago=5)]) as elsewhere:
        fhir.next_base = elsewhere.url  # same host, another port: another origin

        failures = failed(client.post(SERVICE, json=labs_absent(fhir.url)))

        assert [(f["key"], f["reason"]) for f in failures] == [("labs", "off-server-link")]
        assert elsewhere.requests == []
    (first_page,) = fhir.requests_for("Observation")
    assert first_page.headers["authorization"] == f"Bearer {TOKEN}"


def test_a_hanging_server_is_cut_off_by_the_total_budget(tmp_path, fhir):
    """Read timeout longer than the whole budget: the budget still ends the wait."""
    fhir.fault("*", mode="hang")
    with client_with(tmp_path, fhir_read_timeout=5.0, fhir_total_timeout=0.5) as client:
        failures = failed(client.post(SERVICE, json=labs_absent(fhir.url, absent=("labs", "conditions"))))
    assert sorted((f["key"], f["reason"]) for f in failures) == [("conditions", "timeout"), ("labs", "timeout")]
    assert all("within 0.5 s" in f["message"] for f in failures)


def test_the_service_keeps_serving_after_faults(client, fhir):
    for mode in ("hang", "reset", "garbage"):
        fhir.fault("Observation", mode=mode, times=1)
        assert client.post(SERVICE, json=labs_absent(fhir.url)).status_code == 412
        assert outcomes(client.post(SERVICE, json=labs_absent(fhir.url))) == ["start-oral-iron"]


def test_the_token_never_reaches_the_logs_or_the_answer(client, fhir, caplog):
    fhir.fault("Observation", status=401)
    caplog.set_level(logging.DEBUG)

    response = client.post(SERVICE, json=labs_absent(fhir.url))

    assert response.status_code == 412
    assert TOKEN not in response.text
    assert TOKEN not in caplog.text
    warnings = [r for r in caplog.records if r.getMessage() == "prefetch key not obtained"]
    assert [(r.key, r.reason, r.host) for r in warnings] == [("labs", "http-401", "127.0.0.1")]


def test_a_next_link_to_another_name_for_the_same_server_is_not_followed(client, fhir):
    """Origins are compared as written (scheme, host, port): `localhost` is not `127.0.0.1`."""
    fhir.page_size = 1
    fhir.resources += [fx.ferritin(150, days_ago=200)]
    fhir.next_base = f"http://localhost:{fhir.port}/fhir"

    failures = failed(client.post(SERVICE, json=labs_absent(fhir.url)))

    assert [(f["key"], f["reason"]) for f in failures] == [("labs", "off-server-link")]
    assert len(fhir.requests_for("Observation")) == 1


@pytest.mark.parametrize("suffix", ["?_format=json", "#part"])
def test_a_fhir_server_that_is_not_a_base_url_is_412(client, fhir, suffix):
    failures = failed(client.post(SERVICE, json=labs_absent(fhir.url + suffix)))
    assert [(f["key"], f["reason"]) for f in failures] == [("labs", "invalid-fhir-server")]
    assert fhir.requests == []


def test_a_fhir_server_that_is_not_http_is_rejected_before_any_fetch(client):
    response = client.post(SERVICE, json=labs_absent("file:///etc/passwd"))
    assert response.status_code == 400
