"""Which statuses make a resource usable (docs/clinical-rules.md, facts)."""

from __future__ import annotations

import re
from typing import Any

from fhir_mappings.valuesets import iter_codings

_STATUS_CODE = re.compile(r"[a-z-]{1,32}")
OBSERVATION_OK = frozenset({"final", "amended", "corrected"})
CONDITION_CLINICAL_OK = frozenset({"active", "recurrence", "relapse"})
ALLERGY_CLINICAL_OK = frozenset({"active"})
VERIFICATION_BAD = frozenset({"refuted", "entered-in-error"})
CONDITION_CLINICAL_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
ALLERGY_CLINICAL_SYSTEM = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"


def text_or_none(value: Any) -> str | None:
    """The value when it is a string (a list or dict in a code field is junk, not a status)."""
    return value if isinstance(value, str) else None


def status_code(concept: Any, system: str) -> str | None | bool:
    """The code of a status CodeableConcept in `system` (a coding without system counts).

    None when the concept is absent; False when present but holding no readable code (or
    conflicting codes): the status is then unknown, which is not the same as absent.
    """
    if concept is None:
        return None
    codes = {c for s, c, _ in iter_codings(concept) if s in (system, None) and isinstance(c, str)}
    if len(codes) != 1:
        return False
    return codes.pop()


def simple_status(resource: dict[str, Any]) -> str | None:
    """Why a resource with a plain `status` code is unusable as an Observation, or None."""
    status = text_or_none(resource.get("status"))
    if status in OBSERVATION_OK:
        return None
    if status == "entered-in-error":
        return "entered-in-error"
    return f"status {status}" if isinstance(status, str) and len(status) <= 32 else "status missing or unreadable"


def readable_code(value: Any) -> str | None:
    """The value when it reads as a status code (`active`, `entered-in-error`), else None."""
    return value if isinstance(value, str) and _STATUS_CODE.fullmatch(value) else None


def readable_simple_status(resource: dict[str, Any]) -> str | None:
    """What a readable Observation status says against it (not final, amended or corrected), or None."""
    status = readable_code(resource.get("status"))
    return simple_status(resource) if status and status not in OBSERVATION_OK else None


def clinical_problem(resource: dict[str, Any], ok: frozenset[str], clinical_system: str, verification_system: str) -> str | None:
    """Why a Condition/AllergyIntolerance is unusable by its clinical and verification status."""
    verification = status_code(resource.get("verificationStatus"), verification_system)
    if verification is False:
        return "verificationStatus unreadable"
    if verification in VERIFICATION_BAD:
        return str(verification)
    clinical = status_code(resource.get("clinicalStatus"), clinical_system)
    if clinical is None:
        return "clinicalStatus missing"
    if clinical is False:
        return "clinicalStatus unreadable"
    if clinical not in ok:
        return f"clinicalStatus {clinical}" if len(clinical) <= 32 else "clinicalStatus unreadable"
    return None


def readable_clinical_problem(resource: dict[str, Any], ok: frozenset[str], clinical_system: str, verification_system: str) -> str | None:
    """What a *readable* clinical or verification status says against the resource, or None.

    Used for unreadable resources: a readable refuted, entered-in-error or inactive status still
    rules the resource out, whereas a status that cannot be read leaves it unknown.
    """
    verification = status_code(resource.get("verificationStatus"), verification_system)
    if isinstance(verification, str) and verification in VERIFICATION_BAD:
        return verification
    clinical = status_code(resource.get("clinicalStatus"), clinical_system)
    if isinstance(clinical, str) and clinical not in ok:
        return f"clinicalStatus {clinical}" if len(clinical) <= 32 else "clinicalStatus unreadable"
    return None
