"""Every sample patient of examples/ produces the outcome its manifest promises, through the HTTP API."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cds_service.app import create_app
from cds_service.tooling.offline import EXAMPLES_DIR, Example, load_examples
from tests.conftest import make_settings, outcomes

EXAMPLES = load_examples()
SPEC_OUTCOMES = {
    "order-iron-studies", "start-oral-iron", "continue-oral-iron", "escalate-iv-iron", "iron-stores-adequate",
    "iron-overload-risk", "screen-for-rls", "pregnancy-iron-needs", "add-iron-to-dopamine-agonist",
    "review-aggravating-medication",
}


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> TestClient:
    app = create_app(make_settings(tmp_path_factory.mktemp("examples")))
    with TestClient(app) as client:
        yield client


def service_id(client: TestClient, profile: str, hook: str) -> str:
    for service in client.app.state.runtime.services.values():
        if service.profile == profile and service.hook == hook:
            return service.id
    pytest.skip(f"profile {profile} is not loaded yet")


def post_example(client: TestClient, example: Example, profile: str):
    client.app.state.runtime.clock = lambda: example.now
    return client.post(f"/cds-services/{service_id(client, profile, example.hook)}", json=example.cds_request())


CASES = [(e, p) for e in EXAMPLES for p in ("article", "aasm-2024")]


@pytest.mark.parametrize("example,profile", CASES, ids=[f"{e.name}-{p}" for e, p in CASES])
def test_example_gives_its_expected_outcomes(api, example: Example, profile: str):
    response = post_example(api, example, profile)
    assert outcomes(response) == sorted(example.expected_for(profile)), example.title
    by_outcome = {card["source"]["topic"]["code"]: card for card in response.json()["cards"]}
    for outcome, indicator in example.indicators.items():
        assert by_outcome[outcome]["indicator"] == indicator, f"{example.name}: {outcome}"


def test_child_gets_no_adult_dose_suggestion(api):
    example = next(e for e in EXAMPLES if e.name == "child-low-ferritin")
    response = post_example(api, example, "article")
    assert outcomes(response) == ["start-oral-iron"]
    for card in response.json()["cards"]:
        for suggestion in card.get("suggestions") or []:
            for action in suggestion.get("actions") or []:
                assert (action.get("resource") or {}).get("resourceType") != "MedicationRequest", suggestion["label"]


def test_examples_cover_every_outcome_of_the_spec():
    produced = {code for e in EXAMPLES for codes in e.expected.values() for code in codes}
    assert produced >= SPEC_OUTCOMES
    with_request = {e.request_name for e in EXAMPLES if e.request_name}
    patient_view = {name for name in with_request if not name.startswith(("order-select-", "order-sign-"))}
    assert patient_view == SPEC_OUTCOMES, "one patient-view request per outcome"
    order_hooks = {e.hook for e in EXAMPLES if e.request_name and e.request_name not in SPEC_OUTCOMES}
    assert order_hooks == {"order-select", "order-sign"}, "ready requests for both order hooks"


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_bundle_is_a_realistic_collection(example: Example):
    bundle = example.bundle()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    patients = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert len(patients) == 1 and isinstance(patients[0]["name"][0]["given"], list)
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert entry["fullUrl"].endswith(f"/{resource['resourceType']}/{resource['id']}")
        for key in ("effectiveDateTime", "authoredOn", "onsetDateTime"):
            if key in resource:
                when = datetime.fromisoformat(resource[key].replace("Z", "+00:00"))
                when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
                assert when <= example.now, f"{resource['id']}.{key} is after the example's now"


def test_committed_requests_match_the_bundles():
    """examples/requests/ is generated (`cds-service examples requests`): it must not drift from the bundles."""
    for example in EXAMPLES:
        if not example.request_name:
            continue
        path = EXAMPLES_DIR / "requests" / f"{example.request_name}.json"
        assert json.loads(path.read_text(encoding="utf-8")) == example.cds_request(), f"regenerate {path}"


def test_readme_request_gives_start_oral_iron_on_the_real_clock(tmp_path: Path):
    """The README's curl example runs against `make serve`, which uses the real clock."""
    request = json.loads((EXAMPLES_DIR / "requests" / "start-oral-iron.json").read_text(encoding="utf-8"))
    app = create_app(make_settings(tmp_path, mode="development"))
    with TestClient(app) as client:
        response = client.post("/cds-services/rls-iron-patient-view", json=request)
    assert outcomes(response) == ["start-oral-iron"]
