"""The FHIR R4 resources a card suggests: drafts the clinician can accept in one click.

Every resource is plain JSON that validates against `fhir.resources.R4B` (tests check it),
refers to the patient only as `Patient/<id>` (no names), and is a `draft` so that the EHR,
not this service, decides whether it becomes an order.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
DRUG_FORM = "http://terminology.hl7.org/CodeSystem/v3-orderableDrugForm"
DOSE_RATE_TYPE = "http://terminology.hl7.org/CodeSystem/dose-rate-type"

FERROUS_SULFATE = {"system": RXNORM, "code": "310325", "display": "ferrous sulfate 325 MG Oral Tablet"}
FERRITIN_LOINC = {"system": LOINC, "code": "2276-4", "display": "Ferritin [Mass/volume] in Serum or Plasma"}
IRON_PANEL_LOINC = {"system": LOINC, "code": "50190-5", "display": "Iron and Iron binding capacity panel - Serum or Plasma"}
ORAL_ROUTE = {"system": SNOMED, "code": "26643006", "display": "Oral route"}
LAB_CATEGORY = {"system": SNOMED, "code": "108252007", "display": "Laboratory procedure"}
REFERRAL_CATEGORY = {"system": SNOMED, "code": "3457005", "display": "Patient referral"}
RLS_REASON = {"coding": [{"system": SNOMED, "code": "32914008", "display": "Restless legs syndrome"}], "text": "Restless legs syndrome"}


def _subject(patient_id: str) -> dict[str, str]:
    return {"reference": f"Patient/{patient_id}"}


def oral_iron_request(patient_id: str) -> dict[str, Any]:
    """Ferrous sulfate 325 mg oral tablet once daily (the article's starting dose), as a draft order."""
    return {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [dict(FERROUS_SULFATE)], "text": "ferrous sulfate 325 mg oral tablet"},
        "subject": _subject(patient_id),
        "reasonCode": [RLS_REASON],
        "dosageInstruction": [
            {
                "sequence": 1,
                "text": "1 tablet (325 mg) by mouth once daily",
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                "route": {"coding": [dict(ORAL_ROUTE)], "text": "oral"},
                "doseAndRate": [
                    {
                        "type": {"coding": [{"system": DOSE_RATE_TYPE, "code": "ordered", "display": "Ordered"}]},
                        "doseQuantity": {"value": 1, "unit": "tablet", "system": DRUG_FORM, "code": "TAB"},
                    }
                ],
            }
        ],
    }


def _lab_request(patient_id: str, code: dict[str, str], text: str, note: str) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "priority": "routine",
        "category": [{"coding": [dict(LAB_CATEGORY)]}],
        "code": {"coding": [dict(code)], "text": text},
        "subject": _subject(patient_id),
        "reasonCode": [RLS_REASON],
        "note": [{"text": note}],
    }


def ferritin_request(patient_id: str, note: str) -> dict[str, Any]:
    """Serum ferritin (LOINC 2276-4), with the draw instructions of safety rule 7."""
    return _lab_request(patient_id, FERRITIN_LOINC, "Ferritin", note)


def iron_panel_request(patient_id: str, note: str) -> dict[str, Any]:
    """Iron, TIBC and transferrin saturation (LOINC 50190-5): TSAT is what the aasm-2024 profile needs."""
    return _lab_request(patient_id, IRON_PANEL_LOINC, "Iron panel (serum iron, TIBC, transferrin saturation)", note)


def recheck_window(start: date, today: date, first_day: int, last_day: int) -> tuple[date, date]:
    """The recheck window after a course start, never opening in the past."""
    opens = start + timedelta(days=first_day)
    closes = start + timedelta(days=last_day)
    opens = max(opens, today)
    return opens, max(closes, opens)


def ferritin_recheck_request(patient_id: str, opens: date, closes: date, note: str) -> dict[str, Any]:
    """A ferritin recheck due within the profile's window after starting oral iron."""
    resource = _lab_request(patient_id, FERRITIN_LOINC, "Ferritin recheck on oral iron", note)
    resource["occurrencePeriod"] = {"start": opens.isoformat(), "end": closes.isoformat()}
    return resource


def infusion_name(product: str) -> str:
    """"IV iron infusion", naming the product when the profile prefers a specific one."""
    return "IV iron infusion" if product.strip().lower() in ("", "iv iron") else f"IV iron infusion ({product})"


def iv_iron_referral(patient_id: str, product: str, reasons: list[str]) -> dict[str, Any]:
    """Referral for an IV iron infusion naming the profile's preferred product; reasons carry no patient values."""
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "priority": "routine",
        "category": [{"coding": [dict(REFERRAL_CATEGORY)]}],
        "code": {"text": f"Referral for {infusion_name(product)}"},
        "subject": _subject(patient_id),
        "reasonCode": [RLS_REASON],
    }
    notes = ([f"Preferred product: {product}."] if infusion_name(product) != "IV iron infusion" else []) + list(reasons)
    if notes:
        resource["note"] = [{"text": n} for n in notes]
    return resource
