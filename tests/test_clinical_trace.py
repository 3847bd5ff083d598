"""Why a card did not appear: the decision trace names the precedence or exclusion that silenced it.

Each chart is POSTed to the service (what the clinician sees) and evaluated in-process with the
same runtime (what the auditor reads in the trace).
"""

from __future__ import annotations

from typing import Iterator

import pytest
from fastapi.testclient import TestClient

from cds_service.tooling import fixtures as fx
from cds_service.tooling import offline
from cds_service.tooling.fixtures import DEFAULT_NOW
from tests.conftest import outcomes, serve

UNKNOWN = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception"}]}


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[TestClient]:
    yield from serve(tmp_path_factory.mktemp("trace"))


def answer(api: TestClient, request: dict, profile: str = "article") -> tuple[list[str], dict[str, str]]:
    """Outcomes over HTTP, and rule id -> why it stayed silent, from the trace of the same request."""
    prefix = api.app.state.runtime.rulesets[profile].service_prefix
    codes = outcomes(api.post(f"/cds-services/{prefix}-{request['hook']}", json=request))
    evaluation = offline.evaluate_document(api.app.state.runtime, request, profile=profile, now=DEFAULT_NOW)
    trace = evaluation.trace()
    assert sorted({f["outcome"] for f in trace["fired"]}) == codes
    return codes, {s["rule"]: s["why"] for s in trace["silent"]}


def test_escalation_silences_continue_and_says_so(api):
    request = fx.cds_request([
        fx.condition("rls"), fx.ferritin(30, days_ago=20), fx.medication_request("ferrous-sulfate", days_ago=10), fx.allergy("ferrous-sulfate"),
    ])
    codes, why = answer(api, request)
    assert codes == ["escalate-iv-iron"]
    assert why["continue-oral-iron"] == "overridden by rule escalate-iv-iron.b-oral-intolerance"


def test_recent_iv_iron_is_the_reason_start_is_silent(api):
    request = fx.cds_request([fx.condition("rls"), fx.ferritin(30), fx.medication_administration("ferric-carboxymaltose", days_ago=30)])
    codes, why = answer(api, request)
    assert codes == []
    assert "iv_iron.recent is false" in why["start-oral-iron"]
    assert "days_since_iv_iron >= iv_recheck_days" in why["escalate-iv-iron.f-repeat-course"]


def test_overload_risk_silences_the_iron_family(api):
    request = fx.cds_request([
        fx.condition("rls"), fx.condition("pregnancy"), fx.ferritin(320), fx.medication_request("ferrous-sulfate", days_ago=60),
    ])
    codes, why = answer(api, request)
    assert codes == ["iron-overload-risk"]
    assert why["iron-stores-adequate"] == "overridden by rule iron-overload-risk.high-ferritin"
    assert why["pregnancy-iron-needs"] == "overridden by rule iron-overload-risk.high-ferritin"


def test_high_tsat_is_the_reason_no_iron_is_advised(api):
    codes, why = answer(api, fx.cds_request([fx.condition("rls"), fx.ferritin(30), fx.tsat(50)]))
    assert codes == ["order-iron-studies"]
    assert "tsat_overload" in why["start-oral-iron"]


def test_guideline_tsat_requirement_silences_iron_cards(api):
    request = fx.cds_request([fx.condition("rls"), fx.ferritin(40), fx.medication_request("ropinirole", days_ago=100)])
    codes, why = answer(api, request, profile="aasm-2024")
    assert codes == ["order-iron-studies"]
    assert why["start-oral-iron"] == "overridden by rule order-iron-studies.tsat-missing"
    assert why["add-iron-to-dopamine-agonist"] == "overridden by rule order-iron-studies.tsat-missing"


def test_unknown_allergy_data_silences_start_and_says_so(api):
    request = fx.cds_request([fx.condition("rls"), fx.ferritin(30)])
    request["prefetch"]["allergies"] = UNKNOWN
    codes, why = answer(api, request)
    assert codes == []
    assert why["start-oral-iron"] == "data unknown: allergies"


def test_no_rls_means_only_screen_and_overload(api):
    request = fx.cds_request([
        fx.condition("ida"), fx.ferritin(400), fx.medication_request("ferrous-sulfate", days_ago=30),
        fx.medication_request("sertraline", days_ago=30), fx.condition("pregnancy"),
    ])
    codes, why = answer(api, request)
    assert codes == ["iron-overload-risk", "screen-for-rls"]
    assert why["review-aggravating-medication"].startswith("conditions.rls is true")


def test_a_shared_condition_is_named_in_the_trace(api):
    """Safety rule 2 is one shared condition (rules/conditions.yaml): the trace says it by name."""
    request = fx.cds_request([fx.condition("rls"), fx.condition("hemochromatosis"), fx.ferritin(30, days_ago=20)])
    codes, why = answer(api, request)
    assert codes == []
    assert why["start-oral-iron"] == "no_iron_overload"
