"""Patient identity: which resources belong to the patient of `context.patientId`.

References come relative (`Patient/x`), absolute (`https://ehr/fhir/Patient/x`) or as `urn:uuid:`
Bundle fullUrls. `full_urls` (fullUrl -> "Type/id", from the prefetch Bundles) resolves the last two
and wins over parsing; a `urn:uuid:` that no entry names is unresolved, and the resource is dropped.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from fhir_mappings.errors import MappingInputError

_TYPE_ID = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$")

_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")  # the FHIR id syntax

# Where each patient-specific resource type names its patient.
SUBJECT_FIELD = {
    "Observation": "subject",
    "Condition": "subject",
    "MedicationRequest": "subject",
    "MedicationStatement": "subject",
    "MedicationAdministration": "subject",
    "AllergyIntolerance": "patient",
}


def resolve(reference: Any, full_urls: Mapping[str, str]) -> str | None:
    """"Type/id" that a reference string names, or None when it cannot be resolved safely."""
    if not isinstance(reference, str) or not reference or reference.startswith("#"):
        return None
    if reference in full_urls:
        return full_urls[reference]
    if reference.startswith("urn:"):
        return None
    m = _TYPE_ID.search(reference)
    if not m:
        return None
    if "://" not in reference and reference.count("/") not in (1, 3):
        return None
    return f"{m.group(1)}/{m.group(2)}"


def subject_problem(resource: dict[str, Any], patient_id: str, full_urls: Mapping[str, str], required: bool = True) -> str | None:
    """Why the resource is not the context patient's (an exclusion reason), or None when it is.

    A chart resource also needs an id: a fact must name the resource it came from (`required`
    is false only for draft orders, which the hook itself says are this patient's).
    """
    if required and not _ID.match(resource.get("id") if isinstance(resource.get("id"), str) else ""):
        return "no usable id"
    field = SUBJECT_FIELD.get(resource.get("resourceType", ""), "subject")
    ref = resource.get(field)
    if ref is None:
        return f"no {field}" if required else None
    reference = ref.get("reference") if isinstance(ref, dict) else None
    if not isinstance(reference, str):
        return f"{field} has no reference"
    if reference[8:] == patient_id and reference.startswith("Patient/") and reference not in full_urls and _ID.match(patient_id):
        return None  # the usual case, read as `named_patient` reads it, without resolving
    target = named_patient(resource, full_urls)
    if target is None:
        return f"{field} reference not resolved"
    if target != f"Patient/{patient_id}":
        return f"{field} is {target}"
    return None


def named_patient(resource: dict[str, Any], full_urls: Mapping[str, str]) -> str | None:
    """"Type/id" that the resource's subject (or patient) reference names, when it can be read."""
    ref = resource.get(SUBJECT_FIELD.get(resource.get("resourceType", ""), "subject"))
    reference = ref.get("reference") if isinstance(ref, dict) else None
    if isinstance(reference, str) and reference.startswith("Patient/") and reference not in full_urls and _ID.match(reference[8:]):
        return reference
    return resolve(reference, full_urls)


def another_patients(resource: dict[str, Any], patient_id: str, full_urls: Mapping[str, str]) -> str | None:
    """Why the resource is someone else's ("subject is Patient/x") when its reference says so, else None.

    For an unreadable resource: one whose readable subject names another patient is simply not
    this patient's, and makes no fact of this patient unknown.
    """
    target = named_patient(resource, full_urls)
    if target is None or target == f"Patient/{patient_id}":
        return None
    field = SUBJECT_FIELD.get(resource.get("resourceType", ""), "subject")
    return f"{field} is {target}"


def patient_copies(resources: list[dict[str, Any]], patient_id: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Every copy of the context patient's Patient resource (in a deterministic order), and notes.

    The same Patient may come several times (the patient key and an `_include`); the caller
    decides whether the copies agree. MappingInputError when two different Patients are present.
    """
    patients = [r for r in resources if r.get("resourceType") == "Patient"]
    ids = {r.get("id") if isinstance(r.get("id"), str) else None for r in patients}
    if len(ids) > 1:
        raise MappingInputError("the request's data holds more than one Patient; one chart per request")
    if not patients:
        return [], []
    (only,) = ids
    if only != patient_id:
        shown = f"Patient/{only}" if only else "a Patient without id"
        return [], [f"{shown} is not the context patient: ignored (age and sex unknown)"]
    if len(patients) == 1:
        return patients, []
    # The order must not depend on the order of resources in the request.
    copies = sorted(patients, key=lambda r: repr(sorted(r.items(), key=lambda kv: kv[0])), reverse=True)
    notes = [f"Patient/{patient_id} appears several times with different content"] if any(p != copies[0] for p in copies) else []
    return copies, notes
