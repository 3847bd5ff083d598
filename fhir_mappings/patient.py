"""Patient to PatientFact, and the WHO 2024 anemia threshold that depends on age, sex and pregnancy."""

from __future__ import annotations

from typing import Any

from fhir_mappings import dates
from fhir_mappings.context import ByType, Context, of_type
from fhir_mappings.facts import PatientFact
from fhir_mappings.reading import unreadable_element
from fhir_mappings.references import patient_copies

AGE_FIELDS = ("patient.age_known", "patient.age_years", "patient.age_months", "patient.is_child")


def map_patient(resources: ByType, ctx: Context) -> PatientFact:
    """Age in completed years (a partial birthDate counts from its last possible day) and sex.

    Age is unknown, and the trace and the review-unreadable-record card say why, when the context
    Patient is unreadable, has no usable birthDate, or comes in copies that disagree on birthDate
    or gender (copies that agree are one patient).
    """
    copies, notes = patient_copies(of_type(resources, "Patient"), ctx.patient_id)
    for note in notes:
        ctx.trace.note(note)
    if not copies:
        ctx.trace.note("no Patient resource: age and sex unknown")
        return PatientFact()
    chosen = copies[0]
    for copy in copies:
        element = unreadable_element(copy)
        if element:
            ctx.trace.unknown(copy, fact_type="patient", label="age and sex", element=element, fields=("patient",))
            ctx.trace.note("Patient unreadable: age and sex unknown")
            return PatientFact()
    if len({repr(c.get("gender")) for c in copies}) > 1:
        ctx.trace.unknown(chosen, fact_type="patient", label="age and sex", element="gender (copies disagree)", fields=("patient",))
        return PatientFact()
    gender = chosen.get("gender")
    sex = gender if gender in ("male", "female") else "unknown"
    if len({repr(c.get("birthDate")) for c in copies}) > 1:
        ctx.trace.unknown(chosen, fact_type="patient", label="age", element="birthDate (copies disagree)", fields=AGE_FIELDS)
        return PatientFact(sex=sex)
    ctx.trace.source("patient", f"Patient/{ctx.patient_id}")
    born = dates.last_possible_day(chosen.get("birthDate"))
    if born is None or born > ctx.today:
        element = "birthDate (missing)" if born is None else "birthDate (in the future)"
        ctx.trace.unknown(chosen, fact_type="patient", label="age", element=element, fields=AGE_FIELDS)
        return PatientFact(sex=sex)
    years = dates.completed_years(born, ctx.today)
    return PatientFact(
        age_known=True,
        age_years=years,
        age_months=dates.completed_months(born, ctx.today),
        is_child=years < 18,
        sex=sex,
    )


def anemia_threshold(patient: PatientFact, pregnant: bool, ctx: Context) -> float | None:
    """The hemoglobin (g/dL) below which the patient is anemic (WHO 2024); None under 6 months."""
    p = ctx.param
    if patient.age_known and patient.age_years is not None and patient.age_years < 15:
        months = patient.age_months if patient.age_months is not None else patient.age_years * 12
        if patient.age_years >= 12:
            return float(p("hb_threshold_12_14y_g_dl", 12.0))
        if patient.age_years >= 5:
            return float(p("hb_threshold_5_11y_g_dl", 11.5))
        if patient.age_years >= 2:
            return float(p("hb_threshold_2_4y_g_dl", 11.0))
        if months >= 6:
            return float(p("hb_threshold_6_23m_g_dl", 10.5))
        ctx.trace.note("age under 6 months: no anemia threshold")
        return None
    if not patient.age_known:
        ctx.trace.note("age unknown: adult anemia threshold for the sex used")
    if pregnant:
        return float(p("hb_threshold_pregnant_g_dl", 11.0))
    if patient.sex == "male":
        return float(p("hb_threshold_male_g_dl", 13.0))
    if patient.sex == "female":
        return float(p("hb_threshold_female_g_dl", 12.0))
    threshold = float(p("hb_threshold_sex_unknown_g_dl", 12.0))
    ctx.trace.note(f"sex unknown: {threshold} g/dL anemia threshold used")
    return threshold
