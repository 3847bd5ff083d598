"""Requests shaped like the public CDS Hooks sandbox's, replayed against the service in development mode.

The sandbox is a browser app on another origin: it sends an OPTIONS preflight before every call,
always sends `fhirServer` and never `fhirAuthorization`, fills `prefetch` itself and silently
leaves out the keys whose query failed (the service fetches those from `fhirServer`, without a
token), identifies the user as Practitioner/COREPRACTITIONER1, and for order-select sends
`selections` and a `draftOrders` Bundle holding one R4 MedicationRequest. Its JWTs are ES384 with
`iss` https://sandbox.cds-hooks.org and a `jku` this machine cannot fetch, so the key is inline.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from cds_service.app import create_app
from fhir_mappings.prefetch_keys import prefetch_templates
from cds_service.tooling import fixtures as fx
from tests import realworld
from tests.conftest import make_settings, outcomes
from tests.fhir_server import FhirTestServer

ORIGIN = "https://sandbox.cds-hooks.org"
SANDBOX_ISS = "https://sandbox.cds-hooks.org"
SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"
PATIENT = "smart-1288992"
USER = "Practitioner/COREPRACTITIONER1"
PUBLIC_URL = "http://localhost:8000"
TODAY = fx.DEFAULT_NOW.date().isoformat()


def sandbox_searchset(server_url: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    """What the sandbox puts under a prefetch key: the FHIR server's searchset, as it came back."""
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": fx.instant(0)},
        "type": "searchset",
        "total": len(resources),
        "link": [{"relation": "self", "url": f"{server_url}/Observation?patient={PATIENT}"}],
        "entry": [
            {"fullUrl": f"{server_url}/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}} for r in resources
        ],
    }


def sandbox_draft(rxcui: str = "310325", name: str = "ferrous sulfate 325 MG Oral Tablet", intent: str = "order") -> dict[str, Any]:
    """The R4 MedicationRequest the sandbox's prescribing screen builds when a drug is picked,
    exactly as observed: `category` one object (R4 says a list), `dispenseRequest`, no requester."""
    draft = realworld.sandbox_draft(PATIENT, intent=intent, authored_on=TODAY)
    draft["medicationCodeableConcept"] = {"text": name, "coding": [{"display": name, "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": rxcui}]}
    return draft


def sandbox_request(hook: str, server_url: str, prefetch: dict[str, Any], draft: dict[str, Any] | None = None) -> dict[str, Any]:
    request: dict[str, Any] = {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": server_url,
        "context": {"userId": USER, "patientId": PATIENT},
        "prefetch": prefetch,
    }
    if hook != "patient-view":
        request["context"]["draftOrders"] = {"resourceType": "Bundle", "entry": [{"resource": draft or sandbox_draft()}]}
        if hook == "order-select":
            request["context"]["selections"] = ["MedicationRequest/request-123"]
    return request


def chart(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    """The sandbox's FHIR server content for the patient: demographics, RLS, and `extra`."""
    return [
        fx.patient(PATIENT, gender="male", birth_date="1965-03-02", name=("Daniel", "Adams")),
        fx.condition("rls", patient_id=PATIENT, cid="rls-1"),
        *extra,
    ]


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[TestClient]:
    settings = make_settings(tmp_path_factory.mktemp("sandbox"), mode="development", auth_mode=None, fhir_total_timeout=5.0)
    app = create_app(settings)
    app.state.runtime.clock = lambda: fx.DEFAULT_NOW
    with TestClient(app) as client:
        yield client


def test_preflight_from_the_sandbox_origin_is_allowed(api):
    for path in ("/cds-services", "/cds-services/rls-iron-patient-view", "/cds-services/rls-iron-order-select/feedback"):
        response = api.options(
            path,
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert response.status_code == 200, path
        assert response.headers["access-control-allow-origin"] in (ORIGIN, "*")
        allowed_headers = response.headers["access-control-allow-headers"].lower()
        assert "authorization" in allowed_headers and "content-type" in allowed_headers
        assert "POST" in response.headers["access-control-allow-methods"]


def test_private_network_preflight_to_localhost_is_allowed_in_development(api):
    """Chrome asks before a public https page (the sandbox) may call a service on localhost."""
    response = api.options(
        "/cds-services/rls-iron-patient-view",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
            "Access-Control-Request-Private-Network": "true",
        },
    )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-private-network"] == "true"


def test_discovery_lists_the_three_hooks_the_sandbox_fires(api):
    response = api.get("/cds-services", headers={"Origin": ORIGIN, "Authorization": "Bearer ignored-in-development"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] in (ORIGIN, "*")
    hooks = {s["hook"] for s in response.json()["services"] if s["id"].startswith("rls-iron-")}
    assert hooks >= {"patient-view", "order-select", "order-sign"}


def test_patient_view_fetches_the_keys_whose_sandbox_query_failed(api):
    ferritin = fx.ferritin(32, days_ago=20, patient_id=PATIENT, oid="ferritin-1")
    with FhirTestServer(chart(ferritin, fx.tsat(17, days_ago=20, patient_id=PATIENT, oid="tsat-1"))) as fhir:
        resources = chart()
        prefetch = {
            "patient": resources[0],
            "conditions": sandbox_searchset(fhir.url, [resources[1]]),
            "medications": sandbox_searchset(fhir.url, []),
            # labs, medicationStatements, medicationAdministrations and allergies: the sandbox's
            # queries failed, so the keys are missing and the service must fetch them itself.
        }
        response = api.post("/cds-services/rls-iron-patient-view", json=sandbox_request("patient-view", fhir.url, prefetch), headers={"Origin": ORIGIN})
        assert outcomes(response) == ["start-oral-iron"]
        assert response.headers["access-control-allow-origin"] in (ORIGIN, "*")
        fetched = {r.resource_type for r in fhir.requests}
        assert "Observation" in fetched and "Condition" not in fetched and "Patient" not in fetched
        assert all("authorization" not in r.headers for r in fhir.requests), "no token: the sandbox sends no fhirAuthorization"
        assert all(r.query.get("patient") == [PATIENT] for r in fhir.requests if r.resource_type == "Observation")


def full_prefetch(server_url: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    """Every key answered (the sandbox's queries all succeeded)."""
    by_type = {"labs": "Observation", "conditions": "Condition", "medications": "MedicationRequest",
               "medicationStatements": "MedicationStatement", "medicationAdministrations": "MedicationAdministration",
               "allergies": "AllergyIntolerance"}
    prefetch: dict[str, Any] = {"patient": resources[0]}
    for key, rtype in by_type.items():
        prefetch[key] = sandbox_searchset(server_url, [r for r in resources if r["resourceType"] == rtype])
    assert set(prefetch) == set(prefetch_templates())
    return prefetch


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_draft_iron_order_without_ferritin_asks_for_iron_studies(api, hook):
    """Picking (order-select) or signing (order-sign) ferrous sulfate with no ferritin on record: warning."""
    with FhirTestServer(chart()) as fhir:
        request = sandbox_request(hook, fhir.url, full_prefetch(fhir.url, chart()))
        response = api.post(f"/cds-services/rls-iron-{hook}", json=request, headers={"Origin": ORIGIN})
        assert outcomes(response) == ["order-iron-studies"]
        assert response.json()["cards"][0]["indicator"] == "warning"
        assert fhir.requests == [], "every key was in prefetch: nothing to fetch"


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
@pytest.mark.parametrize("intent", ["order", "proposal"])
def test_picking_ferrous_sulfate_with_a_low_ferritin_gives_its_recheck_not_a_second_order(api, hook, intent):
    """The sandbox's own draft counts as the order being placed: no "start oral iron" card offering
    the same order again (which, accepted, fired the hook again with the same card)."""
    resources = chart(fx.ferritin(32, days_ago=20, patient_id=PATIENT, oid="ferritin-1"), fx.tsat(17, days_ago=20, patient_id=PATIENT, oid="tsat-1"))
    with FhirTestServer(resources) as fhir:
        request = sandbox_request(hook, fhir.url, full_prefetch(fhir.url, resources), draft=sandbox_draft(intent=intent))
        response = api.post(f"/cds-services/rls-iron-{hook}", json=request, headers={"Origin": ORIGIN})
        assert outcomes(response) == ["continue-oral-iron"]
        (card,) = response.json()["cards"]
        ordered = [a["resource"]["resourceType"] for s in card.get("suggestions", []) for a in s["actions"]]
        assert ordered == ["ServiceRequest"], "the recheck only, never a second iron order"


def test_order_select_ignores_draft_orders_that_are_not_selected(api):
    with FhirTestServer(chart()) as fhir:
        request = sandbox_request("order-select", fhir.url, full_prefetch(fhir.url, chart()))
        request["context"]["selections"] = ["MedicationRequest/something-else"]
        response = api.post("/cds-services/rls-iron-order-select", json=request, headers={"Origin": ORIGIN})
        codes = outcomes(response)
        assert codes == ["order-iron-studies"]  # the RLS work-up still applies ...
        assert response.json()["cards"][0]["indicator"] == "info"  # ... but not the draft-order warning


def test_feedback_from_the_sandbox_is_accepted(api):
    with FhirTestServer(chart()) as fhir:
        request = sandbox_request("patient-view", fhir.url, full_prefetch(fhir.url, chart()))
        card = api.post("/cds-services/rls-iron-patient-view", json=request).json()["cards"][0]
    feedback = {"feedback": [{"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": fx.instant(0)}]}
    response = api.post("/cds-services/rls-iron-patient-view/feedback", json=feedback, headers={"Origin": ORIGIN})
    assert response.status_code == 200 and response.json() == {"received": 1}
    assert response.headers["access-control-allow-origin"] in (ORIGIN, "*")


# --- the sandbox's JWT, with its key given inline in CDS_TRUSTED_CLIENTS -------------------------


@pytest.fixture(scope="module")
def sandbox_key() -> tuple[Any, dict[str, Any]]:
    """A stand-in for the sandbox's ES384 key pair (the real public key is in docs/sandbox.md's steps)."""
    private = ec.generate_private_key(ec.SECP384R1())
    public = json.loads(jwt.get_algorithm_by_name("ES384").to_jwk(private.public_key()))
    return private, {**public, "kid": "sandbox-test-kid", "alg": "ES384", "use": "sig"}


def sandbox_token(private: Any, kid: str, path: str) -> str:
    now = int(time.time())
    claims = {"iss": SANDBOX_ISS, "aud": PUBLIC_URL + path, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
    return jwt.encode(claims, private, algorithm="ES384", headers={"kid": kid, "jku": SANDBOX_JKU, "typ": "JWT"})


@pytest.fixture
def jwt_api(tmp_path: Path, sandbox_key) -> Iterator[TestClient]:
    clients = tmp_path / "trusted-clients.yaml"
    clients.write_text(json.dumps({"clients": [{"iss": SANDBOX_ISS, "jwks": {"keys": [sandbox_key[1]]}}]}), encoding="utf-8")
    settings = make_settings(tmp_path, mode="development", auth_mode="jwt", trusted_clients=clients, public_url=PUBLIC_URL)
    app = create_app(settings)
    app.state.runtime.clock = lambda: fx.DEFAULT_NOW
    with TestClient(app) as client:
        yield client


def test_sandbox_jwt_is_accepted_with_its_key_inline(jwt_api, sandbox_key):
    path = "/cds-services/rls-iron-patient-view"
    with FhirTestServer(chart()) as fhir:
        request = sandbox_request("patient-view", fhir.url, full_prefetch(fhir.url, chart(fx.ferritin(32, days_ago=20, patient_id=PATIENT))))
        token = sandbox_token(sandbox_key[0], "sandbox-test-kid", path)
        response = jwt_api.post(path, json=request, headers={"Origin": ORIGIN, "Authorization": f"Bearer {token}"})
        assert outcomes(response) == ["start-oral-iron"]

        unknown_kid = sandbox_token(sandbox_key[0], "not-configured", path)
        rejected = jwt_api.post(path, json=request, headers={"Origin": ORIGIN, "Authorization": f"Bearer {unknown_kid}"})
        assert rejected.status_code == 401
        # the browser can read the 401 (and the sandbox show it) only with the CORS header
        assert rejected.headers["access-control-allow-origin"] in (ORIGIN, "*")
