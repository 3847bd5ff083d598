"""Realistic FHIR R4 resources from a few words: for tests, rule test cases and examples.

`ferritin(32, days_ago=20)` is an Observation a real EHR would send: LOINC-coded, final,
with a UCUM quantity, an effective date and a subject. Every builder takes `patient` and
overrides (`status=...`, `unit=...`) so a test can break exactly one thing.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from fhir_mappings import MappingInput
from fhir_mappings.datafiles import read_yaml
from fhir_mappings.prefetch_keys import key_by_type

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"

DEFAULT_NOW = datetime(2026, 11, 26, 9, 0, tzinfo=timezone.utc)
DEFAULT_PATIENT = "pat-1"


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def day(days_ago: int, now: datetime = DEFAULT_NOW) -> str:
    """The calendar date `days_ago` days before `now`, as YYYY-MM-DD."""
    return (now - timedelta(days=days_ago)).date().isoformat()


def instant(days_ago: int, now: datetime = DEFAULT_NOW, hour: int = 8) -> str:
    d = (now - timedelta(days=days_ago)).date()
    return datetime(d.year, d.month, d.day, hour, 0, tzinfo=timezone.utc).isoformat().replace("+00:00", "Z")


def patient(pid: str = DEFAULT_PATIENT, gender: str | None = "female", birth_date: str | None = "1975-04-12", name: tuple[str, str] = ("Jane", "Example"), **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": pid,
        "name": [{"use": "official", "family": name[1], "given": [name[0]]}],
    }
    if gender is not None:
        resource["gender"] = gender
    if birth_date is not None:
        resource["birthDate"] = birth_date
    resource.update(extra)
    return resource


def birth_date_for_age(years: int, now: datetime = DEFAULT_NOW) -> str:
    """A birthDate that makes the patient exactly `years` old on `now` (birthday 30 days ago)."""
    d = (now - timedelta(days=30)).date()
    return date(d.year - years, d.month, min(d.day, 28)).isoformat()


def observation(loinc: str, display: str, value: float | None, unit: str | None, ucum: str | None = None, *, days_ago: int = 10, patient_id: str = DEFAULT_PATIENT, status: str = "final", oid: str | None = None, now: datetime = DEFAULT_NOW, issued_days_ago: int | None = None, **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid or _id("obs"),
        "status": status,
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": LOINC, "code": loinc, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": instant(days_ago, now),
        "issued": instant(days_ago if issued_days_ago is None else issued_days_ago, now, hour=14),
    }
    if value is not None:
        quantity: dict[str, Any] = {"value": value}
        if unit is not None:
            quantity["unit"] = unit
        if ucum is not None:
            quantity["system"] = UCUM
            quantity["code"] = ucum
        resource["valueQuantity"] = quantity
    resource.update(extra)
    return resource


def ferritin(value: float, days_ago: int = 10, unit: str = "ng/mL", ucum: str | None = "ng/mL", loinc: str = "2276-4", **kw: Any) -> dict[str, Any]:
    return observation(loinc, "Ferritin [Mass/volume] in Serum or Plasma", value, unit, ucum, days_ago=days_ago, **kw)


def hemoglobin(value: float, days_ago: int = 10, unit: str = "g/dL", ucum: str | None = "g/dL", loinc: str = "718-7", **kw: Any) -> dict[str, Any]:
    return observation(loinc, "Hemoglobin [Mass/volume] in Blood", value, unit, ucum, days_ago=days_ago, **kw)


def tsat(value: float, days_ago: int = 10, loinc: str = "2502-3", **kw: Any) -> dict[str, Any]:
    return observation(loinc, "Iron saturation [Mass Fraction] in Serum or Plasma", value, "%", "%", days_ago=days_ago, **kw)


def serum_iron(value: float, days_ago: int = 10, unit: str = "ug/dL", ucum: str | None = "ug/dL", **kw: Any) -> dict[str, Any]:
    return observation("2498-4", "Iron [Mass/volume] in Serum or Plasma", value, unit, ucum, days_ago=days_ago, **kw)


def tibc(value: float, days_ago: int = 10, unit: str = "ug/dL", ucum: str | None = "ug/dL", **kw: Any) -> dict[str, Any]:
    return observation("2500-7", "Iron binding capacity [Mass/volume] in Serum or Plasma", value, unit, ucum, days_ago=days_ago, **kw)


CONDITIONS = {
    "rls": (SNOMED, "32914008", "Restless legs syndrome"),
    "rls-icd": (ICD10, "G25.81", "Restless legs syndrome"),
    "ida": (SNOMED, "87522002", "Iron deficiency anemia"),
    "ida-icd": (ICD10, "D50.9", "Iron deficiency anemia, unspecified"),
    "pregnancy": (SNOMED, "77386006", "Pregnancy"),
    "celiac": (SNOMED, "396331005", "Celiac disease"),
    "crohns": (SNOMED, "34000006", "Crohn's disease"),
    "bariatric": (ICD10, "Z98.84", "Bariatric surgery status"),
    "hemochromatosis": (ICD10, "E83.110", "Hereditary hemochromatosis"),
}


def condition(kind: str, *, patient_id: str = DEFAULT_PATIENT, clinical: str | None = "active", verification: str | None = "confirmed", onset_days_ago: int = 400, cid: str | None = None, now: datetime = DEFAULT_NOW, **extra: Any) -> dict[str, Any]:
    system, code, display = CONDITIONS[kind]
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": cid or _id("cond"),
        "code": {"coding": [{"system": system, "code": code, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{patient_id}"},
        "onsetDateTime": day(onset_days_ago, now),
    }
    if clinical is not None:
        resource["clinicalStatus"] = {"coding": [{"system": CLINICAL, "code": clinical}]}
    if verification is not None:
        resource["verificationStatus"] = {"coding": [{"system": VERIFICATION, "code": verification}]}
    resource.update(extra)
    return resource


MEDICATIONS = {
    "ferrous-sulfate": ("310325", "ferrous sulfate 325 MG Oral Tablet"),
    "ferric-carboxymaltose": ("1435174", "ferric carboxymaltose 50 MG/ML Injectable Solution"),
    "iron-sucrose": ("1741267", "iron sucrose 20 MG/ML Injectable Solution"),
    "sertraline": ("36437", "sertraline"),
    "ropinirole": ("72302", "ropinirole"),
    "pramipexole": ("859033", "pramipexole dihydrochloride 0.25 MG Oral Tablet"),
    "bupropion": ("42347", "bupropion"),
}


def medication_concept(kind: str) -> dict[str, Any]:
    code, display = MEDICATIONS[kind]
    return {"coding": [{"system": RXNORM, "code": code, "display": display}], "text": display}


def medication_request(kind: str, *, days_ago: int = 10, patient_id: str = DEFAULT_PATIENT, status: str = "active", mid: str | None = None, now: datetime = DEFAULT_NOW, **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": mid or _id("medrx"),
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": medication_concept(kind),
        "subject": {"reference": f"Patient/{patient_id}"},
        "authoredOn": instant(days_ago, now),
    }
    resource.update(extra)
    return resource


def medication_statement(kind: str, *, days_ago: int = 10, patient_id: str = DEFAULT_PATIENT, status: str = "active", sid: str | None = None, now: datetime = DEFAULT_NOW, **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationStatement",
        "id": sid or _id("medst"),
        "status": status,
        "medicationCodeableConcept": medication_concept(kind),
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectivePeriod": {"start": day(days_ago, now)},
    }
    resource.update(extra)
    return resource


def medication_administration(kind: str, *, days_ago: int = 60, patient_id: str = DEFAULT_PATIENT, status: str = "completed", aid: str | None = None, now: datetime = DEFAULT_NOW, **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationAdministration",
        "id": aid or _id("medadm"),
        "status": status,
        "medicationCodeableConcept": medication_concept(kind),
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": instant(days_ago, now),
    }
    resource.update(extra)
    return resource


def allergy(kind: str, *, patient_id: str = DEFAULT_PATIENT, clinical: str | None = "active", verification: str | None = "confirmed", aid: str | None = None, **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "AllergyIntolerance",
        "id": aid or _id("allergy"),
        "code": medication_concept(kind),
        "patient": {"reference": f"Patient/{patient_id}"},
    }
    if clinical is not None:
        resource["clinicalStatus"] = {"coding": [{"system": ALLERGY_CLINICAL, "code": clinical}]}
    if verification is not None:
        resource["verificationStatus"] = {"coding": [{"system": ALLERGY_VERIFICATION, "code": verification}]}
    resource.update(extra)
    return resource


def draft_order(kind: str, *, patient_id: str = DEFAULT_PATIENT, mid: str | None = None, **extra: Any) -> dict[str, Any]:
    """A draft MedicationRequest as an EHR puts it in context.draftOrders."""
    resource = medication_request(kind, patient_id=patient_id, status="draft", mid=mid or _id("draft"), **extra)
    resource.pop("authoredOn", None)
    return resource


def bundle(resources: list[dict[str, Any]], kind: str = "searchset") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": [{"resource": r} for r in resources]}


# The search keys (everything but `patient`, which holds a single resource or null).
SEARCH_KEY_BY_TYPE = {t: k for t, k in key_by_type().items() if t != "Patient"}


def cds_request(resources: list[dict[str, Any]], *, hook: str = "patient-view", patient_id: str = DEFAULT_PATIENT, drafts: list[dict[str, Any]] | None = None, selections: list[str] | None = None, with_patient: bool = True, fhir_server: str | None = None, **extra: Any) -> dict[str, Any]:
    """A complete CDS Hooks request with every prefetch key filled (empty Bundles where no data)."""
    prefetch: dict[str, Any] = {key: bundle([]) for key in SEARCH_KEY_BY_TYPE.values()}
    prefetch["patient"] = None
    for resource in resources:
        rtype = resource["resourceType"]
        if rtype == "Patient":
            prefetch["patient"] = resource
        else:
            prefetch[SEARCH_KEY_BY_TYPE[rtype]]["entry"].append({"resource": resource})
    if with_patient and prefetch["patient"] is None:
        prefetch["patient"] = patient(patient_id)
    request: dict[str, Any] = {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": {"patientId": patient_id, "userId": "Practitioner/example"},
        "prefetch": prefetch,
    }
    if fhir_server:
        request["fhirServer"] = fhir_server
    if hook != "patient-view":
        drafts = drafts or []
        request["context"]["draftOrders"] = bundle(drafts, "collection")
        if hook == "order-select":
            request["context"]["selections"] = selections if selections is not None else [f"MedicationRequest/{d['id']}" for d in drafts]
    request.update(extra)
    return request


# --- FHIR data layer builders (issue 3): coded concepts, Medication, fullUrl Bundles, MappingInput ---

ATC = "http://www.whocc.no/atc"


def concept(system: str, code: str, display: str | None = None, text: str | None = None) -> dict[str, Any]:
    """A CodeableConcept with one coding (to override `code` or `medicationCodeableConcept`)."""
    coding: dict[str, Any] = {"system": system, "code": code}
    if display is not None:
        coding["display"] = display
    result: dict[str, Any] = {"coding": [coding]}
    if text is not None:
        result["text"] = text
    return result


def medication(mid: str, kind: str | None = None, code: dict[str, Any] | None = None) -> dict[str, Any]:
    """A Medication resource (for `medicationReference`, contained or prefetched)."""
    return {"resourceType": "Medication", "id": mid, "code": code if code is not None else medication_concept(kind or "ferrous-sulfate")}


def full_url_bundle(resources: list[dict[str, Any]], style: str = "uuid", base: str = "https://ehr.example.org/fhir") -> tuple[dict[str, Any], dict[str, str]]:
    """A searchset whose entries carry fullUrls (`urn:uuid:` or absolute), and fullUrl -> "Type/id"."""
    entries, urls = [], {}
    for resource in resources:
        url = f"urn:uuid:{uuid.uuid4()}" if style == "uuid" else f"{base}/{resource['resourceType']}/{resource['id']}"
        entries.append({"fullUrl": url, "resource": resource})
        urls[url] = f"{resource['resourceType']}/{resource['id']}"
    return {"resourceType": "Bundle", "type": "searchset", "entry": entries}, urls


_PARAMS_CACHE: dict[str, dict[str, Any]] = {}


def article_params() -> dict[str, Any]:
    """The parameter values of rules/profiles/article.yaml (name -> value); read once, a fresh copy each call."""
    if "article" not in _PARAMS_CACHE:


        path = Path(__file__).resolve().parents[2] / "rules" / "profiles" / "article.yaml"
        _PARAMS_CACHE["article"] = {name: spec["value"] for name, spec in read_yaml(path)["parameters"].items()}
    return dict(_PARAMS_CACHE["article"])


def mapping_input(resources: list[dict[str, Any]], *, patient_id: str = DEFAULT_PATIENT, now: datetime = DEFAULT_NOW, hook: str = "patient-view", drafts: list[dict[str, Any]] | None = None, full_urls: dict[str, str] | None = None, params: dict[str, Any] | None = None) -> Any:
    """A fhir_mappings.MappingInput for direct build_facts tests (article parameters by default)."""
    return MappingInput(
        resources=list(resources),
        patient_id=patient_id,
        now=now,
        params=params if params is not None else article_params(),
        hook=hook,
        draft_orders=list(drafts or []),
        full_urls=dict(full_urls or {}),
    )
