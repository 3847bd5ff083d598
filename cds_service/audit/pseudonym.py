"""Pseudonymous patient keys: the same patient gets the same key, the raw id never reaches the log."""

from __future__ import annotations

import hashlib
import hmac

CONTEXT_PATIENT = "Patient/[context-patient]"
OTHER_PATIENT = "Patient/[other-patient]"


def patient_key(secret: str, patient_id: str) -> str:
    """HMAC-SHA256 of the patient id, hex: joins a patient's decisions without revealing who it is."""
    return hmac.new(secret.encode("utf-8"), patient_id.encode("utf-8"), hashlib.sha256).hexdigest()


def redact_reference(reference: str, patient_id: str) -> str:
    """A resource reference safe to store: Patient ids are patient identifiers, so they are replaced."""
    if reference.startswith("Patient/"):
        return CONTEXT_PATIENT if reference == f"Patient/{patient_id}" else OTHER_PATIENT
    return reference
