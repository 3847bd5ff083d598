"""Real-world FHIR through the HTTP API: defects where no fact reads change nothing, and what
cannot be read is named on a review-unreadable-record card and in the decision log, never read
as absent.

Every chart is POSTed to the service; the trace is read back from the decision record that the
same call wrote.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
from fastapi.testclient import TestClient

from cds_service.audit import Store
from cds_service.tooling import fixtures as fx
from tests import realworld as rw
from tests.conftest import serve
from tests.test_audit_support import wait_until

PV = "/cds-services/rls-iron-patient-view"
AASM_PV = "/cds-services/rls-iron-aasm2024-patient-view"


@pytest.fixture(scope="module")
def database(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("realworld") / "decisions.db"


@pytest.fixture(scope="module")
def api(database: Path) -> Iterator[TestClient]:
    yield from serve(database.parent, database_url=f"sqlite:///{database}")


def post(api: TestClient, resources: list[dict[str, Any]], *, path: str = PV, included: list[dict[str, Any]] = (), **kw: Any) -> dict[str, Any]:
    """POST the chart; `included` resources ride along in the conditions search, as an `_include` brings them."""
    request = fx.cds_request(resources, **kw)
    request["prefetch"]["conditions"]["entry"] += [{"resource": r, "search": {"mode": "include"}} for r in included]
    response = api.post(path, json=request)
    assert response.status_code == 200, response.text
    return response.json()


def codes(answer: dict[str, Any]) -> list[str]:
    return sorted(card["source"]["topic"]["code"] for card in answer["cards"])


def card(answer: dict[str, Any], outcome: str) -> dict[str, Any]:
    (found,) = [c for c in answer["cards"] if c["source"]["topic"]["code"] == outcome]
    return found


def trace(database: Path, answer: dict[str, Any]) -> dict[str, Any]:
    """The decision record the call wrote (written off the request path, so waited for)."""
    store = Store(f"sqlite:///{database}")
    try:
        decision_id = answer["extension"]["decision-id"]
        assert wait_until(lambda: bool(store.get(decision_id))), "the decision was never recorded"
        (record,) = store.get(decision_id)
        return record["detail"]
    finally:
        store.dispose()


def suggested_types(found: dict[str, Any]) -> list[str]:
    return [a["resource"]["resourceType"] for s in found.get("suggestions", []) for a in s["actions"] if "resource" in a]


RLS_LOW = [fx.condition("rls", cid="rls-1"), fx.ferritin(30, days_ago=20, oid="fer-1"), fx.tsat(15, days_ago=20, oid="tsat-1")]


# --- the sandbox's own draft order ------------------------------------------------------------


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
@pytest.mark.parametrize("intent", ["order", "proposal"])
def test_the_sandbox_draft_is_the_order_being_placed(api, database, hook, intent):
    """Ferrous sulfate picked in the sandbox: the recheck for it, never a second iron order."""
    draft = rw.sandbox_draft(intent=intent)
    answer = post(api, RLS_LOW, hook=hook, drafts=[draft], selections=["MedicationRequest/request-123"] if hook == "order-select" else None, path=f"/cds-services/rls-iron-{hook}")
    assert codes(answer) == ["continue-oral-iron"]
    assert suggested_types(card(answer, "continue-oral-iron")) == ["ServiceRequest"]
    detail = trace(database, answer)
    assert detail["unreadable"] == [] and not any(e["resource"].startswith("MedicationRequest/") for e in detail["excluded"])


def test_accepting_the_sandbox_card_does_not_bring_the_same_card_back(api):
    """The old loop: "consider oral iron" -> order it -> the hook fires again with that draft."""
    first = post(api, RLS_LOW)
    assert codes(first) == ["start-oral-iron"]
    ordered = [a["resource"] for s in card(first, "start-oral-iron")["suggestions"] for a in s["actions"] if a["resource"]["resourceType"] == "MedicationRequest"]
    assert len(ordered) == 1
    draft = {**rw.sandbox_draft(), "medicationCodeableConcept": ordered[0]["medicationCodeableConcept"]}
    again = post(api, RLS_LOW, hook="order-sign", drafts=[draft], path="/cds-services/rls-iron-order-sign")
    assert codes(again) == ["continue-oral-iron"]


def test_the_sandbox_draft_before_a_drug_is_picked_changes_nothing(api):
    answer = post(api, RLS_LOW, hook="order-select", drafts=[dict(rw.SANDBOX_EMPTY_DRAFT)], path="/cds-services/rls-iron-order-select")
    assert codes(answer) == ["start-oral-iron"]


# --- defects in elements no fact reads ---------------------------------------------------------


def ehr_chart() -> list[dict[str, Any]]:
    """Every resource type the rules read, as a clean EHR would send them."""
    return [
        r
        for r in (
            fx.patient(),
            fx.condition("rls", cid="rls-1"),
            fx.condition("crohns", cid="crohns-1"),
            fx.ferritin(30, days_ago=20, oid="fer-1"),
            fx.hemoglobin(12.5, days_ago=20, oid="hb-1"),
            fx.tsat(15, days_ago=20, oid="tsat-1"),
            fx.medication_request("sertraline", mid="ssri-1"),
            fx.medication_statement("ferrous-sulfate", days_ago=50, sid="fes-1"),
            fx.medication_administration("iron-sucrose", days_ago=400, aid="ivs-1"),
            fx.allergy("ferric-carboxymaltose", aid="alg-1"),
        )
    ]


@pytest.mark.parametrize("path", [PV, AASM_PV])
def test_ehr_export_defects_outside_read_elements_drop_nothing(api, database, path):
    clean = post(api, ehr_chart(), path=path, with_patient=False)
    defective = post(api, [rw.ehr_export_defects(r) for r in ehr_chart()], path=path, with_patient=False)
    assert codes(defective) == codes(clean) == ["escalate-iv-iron", "review-aggravating-medication"]
    detail = trace(database, defective)
    assert detail["unreadable"] == [] and detail["excluded"] == []
    assert "IV iron allergy" in card(defective, "escalate-iv-iron")["detail"]  # the allergy still counts


def test_a_hemochromatosis_condition_with_an_empty_display_still_stops_iron(api):
    hemochromatosis = rw.ehr_export_defects(fx.condition("hemochromatosis", cid="hh-1"))
    answer = post(api, [*RLS_LOW, hemochromatosis, fx.medication_request("ferrous-sulfate", days_ago=10, mid="fes-1")])
    assert codes(answer) == ["iron-overload-risk"]


def test_a_pregnancy_with_an_empty_note_still_withholds_the_iv_referral(api):
    pregnancy = rw.ehr_export_defects(fx.condition("pregnancy", cid="preg-1"))
    answer = post(api, [*RLS_LOW, fx.condition("ida", cid="ida-1"), pregnancy])
    assert codes(answer) == ["escalate-iv-iron", "pregnancy-iron-needs"]
    assert suggested_types(card(answer, "escalate-iv-iron")) == []
    assert "first trimester" in card(answer, "escalate-iv-iron")["detail"]


def test_a_child_with_an_empty_telecom_value_gets_no_adult_dose(api):
    child = rw.ehr_export_defects(fx.patient(birth_date=fx.birth_date_for_age(11)))
    answer = post(api, [child, *RLS_LOW], with_patient=False)
    assert codes(answer) == ["start-oral-iron"]
    assert "MedicationRequest" not in suggested_types(card(answer, "start-oral-iron"))
    assert "under 18" in card(answer, "start-oral-iron")["detail"]


@pytest.mark.parametrize(
    "code, system",
    [("72892002", rw.SNOMED), ("47200007", rw.SNOMED), ("77386006", rw.SNOMED), ("Z34.00", rw.ICD10), ("Z34.90", rw.ICD10), ("O09.511", rw.ICD10), ("Z33.1", rw.ICD10)],
)
def test_synthea_and_ehr_pregnancy_codes_are_pregnancy(api, code, system):
    answer = post(api, [*RLS_LOW, rw.synthea_condition(code, "pregnancy", system)])
    assert "pregnancy-iron-needs" in codes(answer)


def test_a_patient_sent_twice_with_the_same_birth_date_is_one_patient(api):
    first = fx.patient(birth_date=fx.birth_date_for_age(11))
    second = rw.ehr_export_defects(first)
    answer = post(api, [first, *RLS_LOW], included=[second], with_patient=False)
    assert codes(answer) == ["start-oral-iron"]
    assert "under 18" in card(answer, "start-oral-iron")["detail"]


# --- unreadable is unknown, and named -----------------------------------------------------------


def review(answer: dict[str, Any]) -> dict[str, Any]:
    return card(answer, "review-unreadable-record")


def test_a_patient_sent_twice_with_different_birth_dates_has_no_age(api, database):
    child, adult = fx.patient(birth_date=fx.birth_date_for_age(11)), fx.patient(birth_date="1975-04-12")
    answer = post(api, [child, *RLS_LOW], included=[adult], with_patient=False)
    assert codes(answer) == ["review-unreadable-record", "start-oral-iron"]
    start = card(answer, "start-oral-iron")
    assert "MedicationRequest" not in suggested_types(start), "no adult dose when the age is unknown"
    assert "age could not be established" in start["detail"]
    assert "First line: ferrous sulfate" not in start["detail"]
    assert "Patient/pat-1 (age; birthDate (copies disagree))" in review(answer)["detail"]
    assert trace(database, answer)["unreadable"] == [{"resource": "Patient/[context-patient]", "fact": "age", "element": "birthDate (copies disagree)"}]  # the log never holds the patient id


@pytest.mark.parametrize("birth_date, element", [(None, "birthDate (missing)"), ("12/05/2015", "birthDate"), ("2015-02-30", "birthDate")])
def test_a_patient_without_a_readable_birth_date_gets_no_adult_dose(api, database, birth_date, element):
    answer = post(api, [fx.patient(birth_date=birth_date), *RLS_LOW], with_patient=False)
    assert codes(answer) == ["review-unreadable-record", "start-oral-iron"]
    assert review(answer)["indicator"] == "info"
    assert "MedicationRequest" not in suggested_types(card(answer, "start-oral-iron"))
    assert f"Patient/pat-1 ({'age and sex' if element == 'birthDate' else 'age'}; {element})" in review(answer)["detail"]
    if birth_date:
        assert birth_date not in review(answer)["detail"], "the card never prints a value"
    assert trace(database, answer)["unreadable"][0]["element"] == element


def test_a_newest_ferritin_whose_value_is_text_withholds_iron(api, database):
    newest = fx.ferritin("12", days_ago=3, oid="fer-new")
    older = fx.ferritin(30, days_ago=60, oid="fer-old")
    answer = post(api, [fx.condition("rls", cid="rls-1"), newest, older, fx.tsat(15, days_ago=60, oid="tsat-1")])
    assert codes(answer) == ["review-unreadable-record"]
    found = review(answer)
    assert found["indicator"] == "warning", "a card of the iron family was withheld"
    assert "Observation/fer-new (ferritin; valueQuantity.value)" in found["detail"]
    assert "Start oral iron" in found["detail"]
    detail = trace(database, answer)
    assert detail["unreadable"] == [{"resource": "Observation/fer-new", "fact": "ferritin", "element": "valueQuantity.value"}]
    assert "start-oral-iron" in detail["withheld"] and "ferritin" in detail["unknown"]
    assert {"resource": "Observation/fer-new", "reason": "unreadable: valueQuantity.value"} in detail["excluded"]
    silent = {s["rule"]: s["why"] for s in detail["silent"]}
    assert silent["start-oral-iron"].startswith("data unknown: ferritin")


UNREADABLE_DATES = [
    ("ferritin", lambda: fx.ferritin(12, days_ago=3, oid="x-1", effectiveDateTime="03/12/2026"), "effectiveDateTime"),
    ("hemoglobin", lambda: fx.hemoglobin(9.0, days_ago=3, oid="x-1", effectiveDateTime="2026-11-23T08:00"), "effectiveDateTime"),
    ("TSAT", lambda: fx.tsat(12, days_ago=3, oid="x-1", effectiveDateTime="yesterday"), "effectiveDateTime"),
    ("oral iron therapy", lambda: fx.medication_statement("ferrous-sulfate", sid="x-1", effectivePeriod={"start": "last spring"}), "effectivePeriod.start"),
    ("oral iron therapy", lambda: fx.medication_request("ferrous-sulfate", mid="x-1", authoredOn="2026-13-01"), "authoredOn"),
    ("IV iron therapy", lambda: fx.medication_administration("iron-sucrose", aid="x-1", effectiveDateTime="last month"), "effectiveDateTime"),
    ("pregnancy", lambda: fx.condition("pregnancy", cid="x-1", onsetDateTime="first trimester"), "onsetDateTime"),
    ("iron overload disorder", lambda: fx.condition("hemochromatosis", cid="x-1", abatementDateTime="never"), "abatementDateTime"),
]


@pytest.mark.parametrize("fact, make, element", UNREADABLE_DATES, ids=[f"{f}-{e}" for f, _, e in UNREADABLE_DATES])
def test_an_unreadable_date_on_each_dated_fact_is_named_and_never_read_as_absent(api, database, fact, make, element):
    answer = post(api, [*RLS_LOW, make()])
    found = review(answer)
    assert f"/x-1 ({fact}; {element})" in found["detail"]
    assert "start-oral-iron" not in codes(answer) or fact in ("pregnancy",), "start-oral-iron needs every fact it reads"
    assert trace(database, answer)["unreadable"][0]["element"] == element


def test_an_unreadable_pregnancy_keeps_escalation_but_not_its_referral(api):
    pregnancy = fx.condition("pregnancy", cid="preg-1", code={"coding": [{"system": rw.SNOMED, "code": "77386006"}, {"system": rw.SNOMED, "code": 77386006}]})
    answer = post(api, [*RLS_LOW, fx.condition("ida", cid="ida-1"), pregnancy])
    assert codes(answer) == ["escalate-iv-iron", "review-unreadable-record"]
    escalate = card(answer, "escalate-iv-iron")
    assert suggested_types(escalate) == [], "no IV referral with pregnancy unknown"
    assert "pregnancy record could not be read" in escalate["detail"]
    assert "Suggested: referral" not in escalate["detail"]
    assert review(answer)["indicator"] == "info"
    assert "Pregnancy iron needs" in review(answer)["detail"]


def test_an_unreadable_hemochromatosis_withholds_every_iron_card(api):
    hemochromatosis = fx.condition("hemochromatosis", cid="hh-1", subject={"reference": ["Patient/pat-1"]})
    answer = post(api, [*RLS_LOW, hemochromatosis], path=AASM_PV)
    assert codes(answer) == ["review-unreadable-record"]
    assert review(answer)["indicator"] == "warning"
    assert "Condition/hh-1 (iron overload disorder; subject.reference)" in review(answer)["detail"]


def test_other_cards_list_the_left_out_resources_of_the_facts_they_read(api):
    preliminary = fx.ferritin(10, days_ago=1, oid="fer-prelim", status="preliminary")
    answer = post(api, [*RLS_LOW, preliminary, fx.condition("rls", cid="rls-old", clinical="resolved")])
    assert codes(answer) == ["start-oral-iron"]
    detail = card(answer, "start-oral-iron")["detail"]
    assert "**Left out:** " in detail
    assert "Observation/fer-prelim (status preliminary)" in detail and "Condition/rls-old (clinicalStatus resolved)" in detail


def test_a_long_left_out_list_shows_eight_and_counts_the_rest(api):
    preliminary = [fx.ferritin(10, days_ago=1, oid=f"fer-prelim-{n:02d}", status="preliminary") for n in range(11)]
    detail = card(post(api, [*RLS_LOW, *preliminary]), "start-oral-iron")["detail"]
    (left_out,) = [line for line in detail.splitlines() if line.startswith("**Left out:** ")]
    assert left_out.count("(status preliminary)") == 8
    assert left_out.endswith("and 3 more (see the decision trace).")


def test_a_resource_whose_code_cannot_be_read_is_named_in_the_trace(api, database):
    garbled = fx.condition("hemochromatosis", cid="garbled-1", code="E83.110")  # a string where R4 wants a CodeableConcept
    answer = post(api, [*RLS_LOW, garbled])
    assert codes(answer) == ["start-oral-iron"], "nothing tells it is hemochromatosis: it makes no fact unknown"
    excluded = trace(database, answer)["excluded"]
    assert {"resource": "Condition/garbled-1", "reason": "unreadable: code (what it records cannot be told)"} in excluded
