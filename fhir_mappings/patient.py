"""Patient to PatientFact, and the WHO 2024 anemia threshold that depends on age, sex and pregnancy."""

from __future__ import annotations

from typing import Any

from fhir_mappings import dates
from fhir_mappings.context import Context
from fhir_mappings.facts import PatientFact
from fhir_mappings.references import select_patient
from fhir_mappings.validation import invalid_reason


def map_patient(resources: list[dict[str, Any]], ctx: Context) -> PatientFact:
    """Age in completed years (a partial birthDate counts from its last possible day) and sex."""
    chosen, notes = select_patient(resources, ctx.patient_id)
    for note in notes:
        ctx.trace.note(note)
    if chosen is None:
        ctx.trace.note("no Patient resource: age and sex unknown")
        return PatientFact()
    problem = invalid_reason(chosen)
    if problem:
        ctx.trace.exclude(chosen, problem)
        ctx.trace.note("Patient unusable: age and sex unknown")
        return PatientFact()
    ctx.trace.source("patient", f"Patient/{ctx.patient_id}")
    gender = chosen.get("gender")
    sex = gender if gender in ("male", "female") else "unknown"
    born = dates.last_possible_day(chosen.get("birthDate")) if "birthDate" in chosen else None
    if born is None:
        ctx.trace.note("Patient.birthDate missing or unreadable: age unknown")
        return PatientFact(sex=sex)
    if born > ctx.today:
        ctx.trace.exclude(chosen, "birthDate in the future")
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
