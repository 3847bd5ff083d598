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
    if patient_id and patient_id in text:
        text = _replace_bare_id(text, patient_id)
    return text


def _replace_bare_id(text: str, patient_id: str) -> str:
    """The patient id replaced where it stands alone (not inside a longer id such as `pat-1-obs-2`).

    A scan rather than a regex built from the id: every request has another id, so a compiled
    pattern would never be reused.
    """
    out, start, size = [], 0, len(patient_id)
    found = text.find(patient_id)
    while found != -1:
        before = text[found - 1] if found else ""
        after = text[found + size] if found + size < len(text) else ""
        alone = not (before and (before.isalnum() or before in "_-.")) and not (after and (after.isalnum() or after in "_-"))
        if alone:
            out.append(text[start:found])
            out.append("[context-patient]")
            start = found + size
        found = text.find(patient_id, found + size if alone else found + 1)
    out.append(text[start:])
    return "".join(out)
