"""Redaction of the patient id in free text stored in the decision log."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.audit.pseudonym import CONTEXT_PATIENT, OTHER_PATIENT, redact_text


def _regex_reference(text: str, patient_id: str) -> str:
    """The rule in regex form: the id where no word character, `-` or `.` (before) / `-` (after) touches it."""
    return re.compile(r"(?<![\w\-.])" + re.escape(patient_id) + r"(?![\w\-])").sub("[context-patient]", text)


def test_references_and_the_bare_id_are_replaced():
    text = "Observation/pat-1-obs-2 excluded: subject Patient/pat-1, not Patient/pat-2; pat-1 named, pat-10 not"
    assert redact_text(text, "pat-1") == (
        f"Observation/pat-1-obs-2 excluded: subject {CONTEXT_PATIENT}, not {OTHER_PATIENT}; [context-patient] named, pat-10 not"
    )


@settings(max_examples=400, deadline=None)
@given(
    patient_id=st.text(alphabet="ab1-.", min_size=1, max_size=3),
    text=st.text(alphabet="ab1-._ /é٣:", max_size=16),
)
def test_the_bare_id_is_replaced_exactly_where_it_stands_alone(patient_id, text):
    assert redact_text(text, patient_id) == _regex_reference(text, patient_id)
