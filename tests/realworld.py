"""Real-world FHIR shapes: what the CDS Hooks sandbox, EHR exports and Synthea actually send.

Each builder returns a resource as it arrives, defects included, so the tests can post it through
the HTTP API. The defects live in elements no fact is built from (they must change nothing) unless
a builder says otherwise.
"""

from __future__ import annotations

import copy
from typing import Any

from cds_service.tooling import fixtures as fx

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"

# The draft the sandbox's Rx screen sends once ferrous sulfate is picked (observed 2026-12-07):
# `category` is one object where R4 says a list, `dispenseRequest` holds only a supply duration,
# `authoredOn` is a date, there is no `requester`. `intent` is order or proposal.
SANDBOX_DRAFT: dict[str, Any] = {
    "resourceType": "MedicationRequest",
    "id": "request-123",
    "status": "draft",
    "subject": {"reference": "Patient/rls-pt-1"},
    "authoredOn": "2026-12-07",
    "dosageInstruction": [
        {
            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
            "doseAndRate": [{"doseQuantity": {"value": 1, "system": "http://unitsofmeasure.org", "code": "{pill}"}}],
        }
    ],
    "dispenseRequest": {"expectedSupplyDuration": {"value": 30, "unit": "days", "system": "http://unitsofmeasure.org", "code": "d"}},
    "intent": "order",
    "category": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category", "code": "community"}]},
    "medicationCodeableConcept": {
        "text": "ferrous sulfate 325 MG Oral Tablet",
        "coding": [{"display": "ferrous sulfate 325 MG Oral Tablet", "system": RXNORM, "code": "310325"}],
    },
}

# Before a drug is picked, order-select already fires with a draft holding only these three.
SANDBOX_EMPTY_DRAFT: dict[str, Any] = {"resourceType": "MedicationRequest", "id": "request-123", "status": "draft"}


def sandbox_draft(patient_id: str = fx.DEFAULT_PATIENT, intent: str = "order", authored_on: str | None = None) -> dict[str, Any]:
    draft = copy.deepcopy(SANDBOX_DRAFT)
    draft["subject"]["reference"] = f"Patient/{patient_id}"
    draft["intent"] = intent
    draft["authoredOn"] = authored_on or fx.DEFAULT_NOW.date().isoformat()
    return draft


def ehr_export_defects(resource: dict[str, Any]) -> dict[str, Any]:
    """The defects EHR exports carry in elements no fact reads: empty strings, empty notes,
    unknown extensions, extra elements, objects where R4 wants lists."""
    out = copy.deepcopy(resource)
    out["extension"] = [{"url": "https://ehr.example.org/fhir/StructureDefinition/unknown", "valueString": ""}]
    out["note"] = [{}]
    out["meta"] = {"source": "", "tag": {"code": "export"}}
    out["text"] = {"status": "generated", "div": ""}
    out["ehrLocalFlag"] = {"anything": [1, "", None]}
    for concept_key in ("code", "medicationCodeableConcept"):
        concept = out.get(concept_key)
        if isinstance(concept, dict):
            concept["text"] = ""
            for coding in concept.get("coding", []):
                coding["display"] = ""
                coding["userSelected"] = "yes"
    kind = out["resourceType"]
    if kind == "Observation":
        out["category"] = {"coding": [{"code": "laboratory"}]}
        out["interpretation"] = "L"
        out["referenceRange"] = {"low": {"value": ""}}
        out["valueQuantity"]["unit"] = ""
    elif kind == "Condition":
        out["category"] = {"text": "problem-list-item"}
        out["recordedDate"] = ""
        out["encounter"] = {"reference": ""}
    elif kind in ("MedicationRequest", "MedicationStatement", "MedicationAdministration"):
        out["dosageInstruction" if kind == "MedicationRequest" else "dosage"] = "1 tab daily"
        out["reasonCode"] = {"text": ""}
        if kind == "MedicationRequest":
            out["category"] = {"text": "outpatient"}
            out["requester"] = {"display": ""}
    elif kind == "AllergyIntolerance":
        out["reaction"] = [{"manifestation": [{"text": ""}], "severity": "very"}]
        out["category"] = "medication"
    elif kind == "Patient":
        out["telecom"] = [{"system": "phone", "value": ""}]
        out["name"] = [{"family": "", "given": ""}]
        out["address"] = {"line": ""}
    return out


def synthea_condition(code: str, display: str, system: str = SNOMED, cid: str | None = None) -> dict[str, Any]:
    """A Condition as Synthea writes it (encounter, recordedDate, category list)."""
    return {
        "resourceType": "Condition",
        "id": cid or f"synthea-{code}",
        "meta": {"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-condition"]},
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "encounter-diagnosis", "display": "Encounter Diagnosis"}]}],
        "code": {"coding": [{"system": system, "code": code, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{fx.DEFAULT_PATIENT}"},
        "encounter": {"reference": "urn:uuid:6e4b1e5a-1d0f-4a1e-9e55-6f0b7e3e7a01"},
        "onsetDateTime": "2026-08-01T10:12:00-04:00",
        "recordedDate": "2026-08-01T10:12:00-04:00",
    }
