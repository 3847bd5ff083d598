"""Prefetch keys absent from the request are fetched from a real local FHIR server.

What an EHR (or the CDS Hooks sandbox) sees: the service fills the gaps in `prefetch` with its
own template queries, with the EHR's bearer token, following `next` pages, concurrently, and
never fetches a key the EHR answered (even with `null` or an OperationOutcome).
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from fastapi.testclient import TestClient

from fhir_mappings.prefetch_keys import prefetch_templates
from cds_service.tooling import fixtures as fx
from fhir_mappings.valuesets import lab_loinc_codes
from tests.conftest import outcomes, serve
from tests.fhir_server import FhirTestServer

SERVICE = "/cds-services/rls-iron-patient-view"
TOKEN = "ehr-issued-access-token-123"
SEARCH_TYPES = {
    "labs": "Observation",
    "conditions": "Condition",
    "medications": "MedicationRequest",
    "medicationStatements": "MedicationStatement",
    "medicationAdministrations": "MedicationAdministration",
    "allergies": "AllergyIntolerance",
}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One app for the module (building one compiles the rules). Generous timeouts: nothing here
    should fail, even on a loaded machine; the failure tests use short ones."""
    yield from serve(tmp_path_factory.mktemp("prefetch-fetch"), fhir_read_timeout=5.0, fhir_total_timeout=10.0)


@pytest.fixture
def fhir() -> Iterator[FhirTestServer]:
    with FhirTestServer([fx.patient()]) as server:
        yield server


def request_with(server: FhirTestServer, resources: list[dict[str, Any]] = (), *, absent: tuple[str, ...] = (), token: str | None = TOKEN, **prefetch: Any) -> dict[str, Any]:
    """A request whose prefetch holds `resources` but lacks the `absent` keys; `prefetch` overrides keys."""
    request = fx.cds_request(list(resources), fhir_server=server.url)
    for key in absent:
        request["prefetch"].pop(key)
    request["prefetch"].update(prefetch)
    if token is not None:
        request["fhirAuthorization"] = {"access_token": token, "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read", "subject": "rls-iron"}
    return request


def test_every_absent_key_is_fetched_with_the_bearer_token(client, fhir):
    fhir.resources += [fx.condition("rls"), fx.ferritin(32, days_ago=20)]
    request = request_with(fhir)
    del request["prefetch"]

    response = client.post(SERVICE, json=request)

    assert outcomes(response) == ["start-oral-iron"]
    assert sorted(r.path for r in fhir.requests) == sorted(["Patient/pat-1", *SEARCH_TYPES.values()])
    assert all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in fhir.requests)
    assert all(r.query.get("patient") == ["pat-1"] for r in fhir.requests if r.path != "Patient/pat-1")
    (labs,) = fhir.requests_for("Observation")
    # the iron labs the rules read, and the pregnancy-status Observation (safety: IV iron in pregnancy)
    assert labs.query["code"] == [",".join(f"http://loinc.org|{c}" for c in (*lab_loinc_codes(), "82810-3"))]


def test_only_the_absent_keys_are_fetched(client, fhir):
    fhir.resources += [fx.ferritin(32, days_ago=20)]
    request = request_with(fhir, [fx.condition("rls")], absent=("labs",))

    response = client.post(SERVICE, json=request)

    assert outcomes(response) == ["start-oral-iron"]
    assert [r.path for r in fhir.requests] == ["Observation"]


def test_without_fhir_authorization_the_fetch_carries_no_token(client, fhir):
    """The CDS Hooks sandbox sends no fhirAuthorization: fetch anyway, without a token."""
    fhir.resources += [fx.ferritin(32, days_ago=20)]
    request = request_with(fhir, [fx.condition("rls")], absent=("labs", "patient"), token=None)

    assert outcomes(client.post(SERVICE, json=request)) == ["start-oral-iron"]
    assert sorted(r.path for r in fhir.requests) == ["Observation", "Patient/pat-1"]
    assert all("authorization" not in r.headers for r in fhir.requests)


def test_next_pages_are_followed(client, fhir):
    """The newest ferritin is on the last page: stopping at page one would say stores are adequate."""
    fhir.page_size = 1
    fhir.resources += [fx.ferritin(150, days_ago=200), fx.ferritin(32, days_ago=5)]
    request = request_with(fhir, [fx.condition("rls")], absent=("labs",))

    assert outcomes(client.post(SERVICE, json=request)) == ["start-oral-iron"]
    pages = fhir.requests_for("Observation")
    assert [p.query.get("_offset") for p in pages] == [None, ["1"]]
    assert all(p.headers.get("authorization") == f"Bearer {TOKEN}" for p in pages)


def test_trailing_slash_on_fhir_server_is_ignored(client, fhir):
    fhir.resources += [fx.ferritin(32, days_ago=20)]
    request = request_with(fhir, [fx.condition("rls")], absent=("labs",))
    request["fhirServer"] = fhir.url + "/"

    assert outcomes(client.post(SERVICE, json=request)) == ["start-oral-iron"]
    assert [r.raw_path.split("?")[0] for r in fhir.requests] == ["/fhir/Observation"]


def test_a_key_present_with_null_is_not_fetched(client, fhir):
    fhir.resources += [fx.ferritin(32, days_ago=20)]
    request = request_with(fhir, [fx.condition("rls")], labs=None)

    assert outcomes(client.post(SERVICE, json=request)) == ["order-iron-studies"]
    assert fhir.requests == []


def test_a_key_holding_an_operation_outcome_is_unknown_not_fetched(client, fhir):
    """The EHR could not get the labs: the service does not re-fetch, and does not say "no ferritin"."""
    fhir.resources += [fx.ferritin(32, days_ago=20)]
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]}
    request = request_with(fhir, [fx.condition("rls")], labs=outcome)

    response = client.post(SERVICE, json=request)

    assert outcomes(response) == []
    assert fhir.requests == []


def test_fetches_of_one_request_run_concurrently(client, fhir):
    """Seven keys, each answer delayed 0.3 s: the server sees them in flight together."""
    fhir.delay = 0.3
    fhir.resources += [fx.condition("rls"), fx.ferritin(32, days_ago=20)]
    request = request_with(fhir)
    request["prefetch"] = {}

    assert outcomes(client.post(SERVICE, json=request)) == ["start-oral-iron"]
    assert len(fhir.requests) == len(prefetch_templates())
    assert fhir.max_in_flight >= 6


def test_the_patient_id_is_url_encoded_in_search_queries(client, fhir):
    odd = "pat&code=x y/1"
    request = fx.cds_request([fx.patient(odd)], patient_id=odd, fhir_server=fhir.url)
    request["prefetch"].pop("conditions")

    response = client.post(SERVICE, json=request)

    assert response.status_code == 200, response.text
    (search,) = fhir.requests
    assert search.path == "Condition"
    assert search.query == {"patient": [odd]}


def test_the_shared_client_is_reused_and_closed_at_shutdown(app, fhir):
    request = request_with(fhir, [fx.condition("rls")], absent=("labs",))
    with TestClient(app) as client:
        assert client.post(SERVICE, json=request).status_code == 200
        shared = app.state.runtime.fhir.open_client
        assert shared is not None
        assert client.post(SERVICE, json=request).status_code == 200
        assert app.state.runtime.fhir.open_client is shared
    assert shared.closed
    assert app.state.runtime.fhir.open_client is None
