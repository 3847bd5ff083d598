"""Exclusions, notes and sources reach the decision trace, and never carry patient values to logs."""

from __future__ import annotations

import logging

from cds_service.tooling import fixtures as fx
from cds_service.tooling.offline import evaluate_document
from fhir_mappings import build_facts

PV = "/cds-services/rls-iron-patient-view"


def cards(response):
    assert response.status_code == 200, response.text
    return sorted(c["source"]["topic"]["code"] for c in response.json()["cards"])


def test_ferritin_unit_boundaries_through_http(client):
    def post(obs):
        return cards(client.post(PV, json=fx.cds_request([fx.condition("rls"), obs])))

    assert post(fx.ferritin(112.35, unit="pmol/L", ucum="pmol/L")) == ["start-oral-iron"]  # = 50 ug/L
    assert post(fx.ferritin(114.6, unit="pmol/L", ucum="pmol/L")) == ["iron-stores-adequate"]  # = 51 ug/L
    assert post(fx.ferritin(50, unit="ug/L", ucum="ug/L")) == ["start-oral-iron"]
    assert post(fx.ferritin(51, unit="mcg/L", ucum=None)) == ["iron-stores-adequate"]
    assert post(fx.ferritin(30, unit="g/mL", ucum="g/mL")) == ["order-iron-studies"]


def test_untrusted_ferritins_leave_the_work_up_card(client):
    for bad in (
        fx.ferritin(30, status="entered-in-error"),
        fx.ferritin(30, status="preliminary"),
        fx.ferritin(30, days_ago=-2),
        fx.ferritin(30, days_ago=366),
        fx.ferritin(30, patient_id="other"),
    ):
        assert cards(client.post(PV, json=fx.cds_request([fx.condition("rls"), bad]))) == ["order-iron-studies"]


def test_amended_ferritin_is_used(client):
    assert cards(client.post(PV, json=fx.cds_request([fx.condition("rls"), fx.ferritin(30, status="amended")]))) == ["start-oral-iron"]


def test_exclusions_and_sources_in_the_decision_trace(app):
    runtime = app.state.runtime
    request = fx.cds_request(
        [
            fx.condition("rls", cid="rls-1"),
            fx.ferritin(30, oid="fer-ok", days_ago=30),
            fx.ferritin(30, oid="fer-unit", unit="g/mL", ucum="g/mL"),
            fx.ferritin(30, oid="fer-other", patient_id="other"),
            fx.condition("ida", cid="ida-refuted", verification="refuted"),
        ]
    )
    trace = evaluate_document(runtime, request).trace()
    assert {"resource": "Observation/fer-unit", "reason": "unit g/mL not convertible to ug/L"} in trace["excluded"]
    assert {"resource": "Observation/fer-other", "reason": "subject is Patient/other"} in trace["excluded"]
    assert {"resource": "Condition/ida-refuted", "reason": "refuted"} in trace["excluded"]
    fired = {f["rule"]: f for f in trace["fired"]}
    assert fired["start-oral-iron"]["facts"]["ferritin"] == ["Observation/fer-ok"]
    assert fired["start-oral-iron"]["facts"]["conditions"] == ["Condition/rls-1"]


def test_no_patient_values_in_exclusions_notes_or_logs(caplog):
    secret_value = 987.654
    resources = [
        fx.patient(name=("Zebulon", "Quintessence"), gender="other", birth_date=None),
        fx.ferritin(secret_value, unit="g/mL", ucum="g/mL"),
        fx.ferritin(secret_value, status="preliminary"),
        fx.hemoglobin(secret_value, unit="mg/mL", ucum="mg/mL"),
        fx.serum_iron(secret_value), fx.tibc(1.0),
        fx.medication_request("ferrous-sulfate", medicationCodeableConcept={"text": "Iron tonic 987.654"}),
        {"resourceType": "Observation", "id": "junk", "code": {"coding": [{"system": "http://loinc.org", "code": "2276-4"}]}, "subject": {"reference": "Patient/pat-1"}, "status": ["final"], "valueQuantity": {"value": secret_value}},
    ]
    with caplog.at_level(logging.DEBUG):
        fs = build_facts(fx.mapping_input(resources))
    text = " ".join([e.reason for e in fs.exclusions] + list(fs.notes) + [r.getMessage() for r in caplog.records])
    for leaked in ("987", "Zebulon", "Quintessence", "tonic"):
        assert leaked not in text
    assert fs.exclusions and fs.notes


def test_the_order_of_resources_never_changes_the_facts():
    import random

    chart = [
        fx.patient(),
        fx.condition("rls", cid="c"),
        *[fx.ferritin(20 + i, days_ago=i % 4, oid=f"f{i}", issued_days_ago=(i % 3)) for i in range(12)],
        *[fx.hemoglobin(11 + i / 10, days_ago=i % 3, oid=f"h{i}", loinc="718-7" if i % 2 else "30350-3") for i in range(8)],
        fx.serum_iron(60, days_ago=1, oid="fe"), fx.tibc(300, days_ago=1, oid="tibc"), fx.tsat(30, days_ago=2, oid="t"),
        fx.medication_request("ferrous-sulfate", days_ago=30, mid="m1"), fx.medication_statement("ferrous-sulfate", days_ago=45, sid="s1"),
        fx.medication_administration("iron-sucrose", days_ago=200, aid="a1"), fx.medication_administration("iron-sucrose", days_ago=100, aid="a2"),
        fx.ferritin(5, status="cancelled", oid="bad"), fx.ferritin(5, patient_id="x", oid="bad2"),
    ]
    expected = build_facts(fx.mapping_input(chart))
    rng = random.Random(3)
    for _ in range(25):
        rng.shuffle(chart)
        assert build_facts(fx.mapping_input(chart)) == expected


def test_hemoglobin_unit_boundaries_reach_the_anemia_rule_through_http(client):
    """IDA by anemia + low ferritin without RLS gives screen-for-rls; 120 g/L and 7.45 mmol/L are 12.0 g/dL."""

    def post(hb, gender):
        chart = [fx.patient(gender=gender), fx.ferritin(30), hb]
        return cards(client.post(PV, json=fx.cds_request(chart)))

    assert post(fx.hemoglobin(120, unit="g/L", ucum="g/L"), "male") == ["screen-for-rls"]  # 12.0 < 13.0
    assert post(fx.hemoglobin(120, unit="g/L", ucum="g/L"), "female") == []  # 12.0 is not below 12.0
    assert post(fx.hemoglobin(7.45, unit="mmol/L", ucum="mmol/L", loinc="59260-0"), "female") == []
    assert post(fx.hemoglobin(119, unit="g/L", ucum="g/L"), "female") == ["screen-for-rls"]
    assert post(fx.hemoglobin(119, unit="g/dL", ucum="g/dL"), "male") == []  # implausible: unusable, not anemic


def test_ferritin_days_since_iv_iron_only_counts_infusions_before_it():
    fs = build_facts(fx.mapping_input([fx.patient(), fx.ferritin(30, days_ago=50), fx.medication_administration("iron-sucrose", days_ago=20)]))
    assert fs.iv_iron.days_since == 20 and fs.ferritin.days_since_iv_iron is None
