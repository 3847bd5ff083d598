"""The suggested FHIR resources are real FHIR R4 (validated with fhir.resources.R4B) and carry no names."""

from __future__ import annotations

from datetime import date

import pytest
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.servicerequest import ServiceRequest

from cds_service.pipeline import suggestions as fhir

NOTE = "Morning draw; no iron tablets or iron-rich food for 24 h before."
MODELS = {"MedicationRequest": MedicationRequest, "ServiceRequest": ServiceRequest}


def validate(resource: dict) -> None:
    """Raise unless the resource is valid FHIR R4 (R4B models accept every R4 element used here)."""
    MODELS[resource["resourceType"]].model_validate(resource)


def all_resources() -> list[dict]:
    return [
        fhir.oral_iron_request("pat-1"),
        fhir.ferritin_request("pat-1", NOTE),
        fhir.iron_panel_request("pat-1", NOTE),
        fhir.ferritin_recheck_request("pat-1", date(2026, 12, 24), date(2027, 1, 7), NOTE),
        fhir.iv_iron_referral("pat-1", "ferric carboxymaltose", ["(a) ferritin still low after an adequate oral trial"]),
    ]


@pytest.mark.parametrize("resource", all_resources(), ids=lambda r: r["resourceType"] + ":" + r["code" if "code" in r else "medicationCodeableConcept"].get("text", ""))
def test_every_suggested_resource_is_valid_fhir_r4_draft_for_the_patient(resource):
    validate(resource)
    assert resource["status"] == "draft"
    assert resource["intent"] == "order"
    assert resource["subject"] == {"reference": "Patient/pat-1"}
    assert "name" not in keys(resource)


def keys(value) -> set[str]:
    """Every key anywhere in a JSON value."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys(v)}
    return set()


def test_invalid_resource_is_rejected_by_the_validator():
    """The validation above can fail: a MedicationRequest without its required subject does."""
    broken = fhir.oral_iron_request("pat-1")
    del broken["subject"]
    with pytest.raises(Exception):
        validate(broken)


def test_oral_iron_is_ferrous_sulfate_325_mg_tablet_once_daily_by_mouth():
    resource = fhir.oral_iron_request("pat-9")
    coding = resource["medicationCodeableConcept"]["coding"][0]
    assert (coding["system"], coding["code"]) == ("http://www.nlm.nih.gov/research/umls/rxnorm", "310325")
    dosage = resource["dosageInstruction"][0]
    assert "once daily" in dosage["text"]
    assert dosage["timing"]["repeat"] == {"frequency": 1, "period": 1, "periodUnit": "d"}
    assert dosage["route"]["coding"][0]["code"] == "26643006"
    assert dosage["doseAndRate"][0]["doseQuantity"]["value"] == 1
    assert resource["subject"]["reference"] == "Patient/pat-9"


def test_iron_studies_are_ferritin_and_the_iron_panel_with_the_draw_note():
    ferritin = fhir.ferritin_request("pat-1", NOTE)
    panel = fhir.iron_panel_request("pat-1", NOTE)
    assert ferritin["code"]["coding"][0]["code"] == "2276-4"
    assert panel["code"]["coding"][0]["code"] == "50190-5"
    for resource in (ferritin, panel):
        assert resource["code"]["coding"][0]["system"] == "http://loinc.org"
        assert resource["note"] == [{"text": NOTE}]


def test_recheck_carries_its_window_as_occurrence_period():
    resource = fhir.ferritin_recheck_request("pat-1", date(2026, 12, 24), date(2027, 1, 7), NOTE)
    assert resource["occurrencePeriod"] == {"start": "2026-12-24", "end": "2027-01-07"}
    assert resource["code"]["coding"][0]["code"] == "2276-4"


@pytest.mark.parametrize(
    "start, today, expected",
    [
        (date(2026, 11, 26), date(2026, 11, 26), (date(2026, 12, 24), date(2027, 1, 7))),  # new start: 28-42 days from today
        (date(2026, 11, 10), date(2026, 11, 26), (date(2026, 12, 8), date(2026, 12, 22))),  # course started 16 days ago
        (date(2026, 10, 1), date(2026, 11, 26), (date(2026, 11, 26), date(2026, 11, 26))),  # window passed: due now, never in the past
    ],
)
def test_recheck_window_counts_from_the_course_start_and_never_opens_in_the_past(start, today, expected):
    assert fhir.recheck_window(start, today, 28, 42) == expected


def test_referral_names_the_preferred_product_and_reasons():
    resource = fhir.iv_iron_referral("pat-1", "ferric carboxymaltose", ["(e) ferritin in the IV-only band"])
    assert "ferric carboxymaltose" in resource["code"]["text"]
    notes = [n["text"] for n in resource["note"]]
    assert "Preferred product: ferric carboxymaltose." in notes
    assert "(e) ferritin in the IV-only band" in notes
    assert resource["category"][0]["coding"][0]["code"] == "3457005"
