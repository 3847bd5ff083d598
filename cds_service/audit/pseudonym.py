"""Pseudonymous patient keys and redaction: the raw patient id never reaches the decision log.

Resource ids are allowed in the log (auditors need them to find the source data), except Patient
ids, which identify the patient: `Patient/...` references become `Patient/[context-patient]` or
`Patient/[other-patient]`, in references and in free text such as exclusion reasons.
"""

from __future__ import annotations

import hashlib
import hmac
import re

CONTEXT_PATIENT = "Patient/[context-patient]"
OTHER_PATIENT = "Patient/[other-patient]"
PATIENT_REFERENCE = re.compile(r"Patient/[A-Za-z0-9\-.]{1,64}")


def patient_key(secret: str, patient_id: str) -> str:
    """HMAC-SHA256 of the patient id, hex: joins a patient's decisions without revealing who it is."""
    return hmac.new(secret.encode("utf-8"), patient_id.encode("utf-8"), hashlib.sha256).hexdigest()


def redact_reference(reference: str, patient_id: str) -> str:
    """A resource reference safe to store."""
    if reference.startswith("Patient/"):
        return CONTEXT_PATIENT if reference == f"Patient/{patient_id}" else OTHER_PATIENT
    return reference


def redact_text(text: str, patient_id: str) -> str:
    """Free text (a reason, a note) with Patient references and the bare patient id replaced."""
    if "Patient/" in text:  # most texts (rule conditions, reasons) quote no reference: skip the regex
        text = PATIENT_REFERENCE.sub(lambda m: redact_reference(m.group(0), patient_id), text)
    if patient_id and patient_id in text:  # rare: most reasons never quote the id, so skip the regex
        bare = re.compile(r"(?<![\w\-.])" + re.escape(patient_id) + r"(?![\w\-])")
        text = bare.sub("[context-patient]", text)
    return text
