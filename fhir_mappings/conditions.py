"""Condition resources to ConditionsFact (RLS, IDA, pregnancy, absorption disorder, iron overload).

A Condition whose code is in one of these value sets but whose read elements are malformed makes
that condition unknown (`conditions.<name>`), unless an element that can be read already rules it
out (another patient's, refuted, entered-in-error, not active). Pregnancy also comes from a
pregnancy status Observation (LOINC 82810-3) whose value says pregnant, final, amended or
corrected, dated within `pregnancy_status_days`.
"""

from __future__ import annotations

from typing import Any

from fhir_mappings import dates, status
from fhir_mappings.context import ByType, Context, guarded, of_type, ref
from fhir_mappings.facts import ConditionsFact
from fhir_mappings.reading import unreadable_code, unreadable_element
from fhir_mappings.references import another_patients, subject_problem
from fhir_mappings.valuesets import VALUESETS, coded_as, coding_keys, concepts_of

CONDITION_LABELS = {
    "rls": "RLS",
    "ida": "iron deficiency anemia",
    "pregnancy": "pregnancy",
    "absorption_disorder": "absorption disorder",
    "iron_overload_disorder": "iron overload disorder",
}
CONDITION_SETS = tuple(CONDITION_LABELS)


def _usable_problem(resource: dict[str, Any], ctx: Context) -> str | None:
    problem = subject_problem(resource, ctx.patient_id, ctx.full_urls)
    if problem:
        return problem
    problem = status.clinical_problem(
        resource, status.CONDITION_CLINICAL_OK, status.CONDITION_CLINICAL_SYSTEM, status.CONDITION_VERIFICATION_SYSTEM
    )
    if problem:
        return problem
    onset = dates.utc_date(resource.get("onsetDateTime")) if "onsetDateTime" in resource else None
    if onset is not None and onset > ctx.today:
        return "dated in the future"
    abated = dates.utc_date(resource.get("abatementDateTime")) if "abatementDateTime" in resource else None
    if abated is not None and abated <= ctx.today:
        return "abated"
    return None


def ruled_out(resource: dict[str, Any], ctx: Context) -> str | None:
    """What a readable element of an unreadable Condition says against it, or None."""
    return another_patients(resource, ctx.patient_id, ctx.full_urls) or status.readable_clinical_problem(
        resource, status.CONDITION_CLINICAL_OK, status.CONDITION_CLINICAL_SYSTEM, status.CONDITION_VERIFICATION_SYSTEM
    )


PREGNANCY_STATUS_CODES = coding_keys(VALUESETS["pregnancy"].observation_codes)
PREGNANT_VALUES = coding_keys(VALUESETS["pregnancy"].observation_values)


def pregnancy_status_says_pregnant(resources: ByType, ctx: Context) -> bool:
    """Whether a usable pregnancy status Observation says pregnant; an unreadable one that could
    have said so makes pregnancy unknown."""
    window = int(ctx.param("pregnancy_status_days", 280))
    pregnant = False

    def read(resource: dict[str, Any]) -> None:
        nonlocal pregnant
        if not coded_as(resource.get("code"), PREGNANCY_STATUS_CODES):
            return
        day = dates.effective_date(resource)
        outside = day is not None and (day > ctx.today or ctx.days_ago(day) > window)
        element = unreadable_element(resource)
        if element:
            against = another_patients(resource, ctx.patient_id, ctx.full_urls) or status.readable_simple_status(resource)
            ctx.trace.unreadable_unless(
                against or ("not within pregnancy_status_days" if outside else None),
                resource,
                fact_type="conditions",
                label="pregnancy",
                element=element,
                fields=("conditions.pregnancy",),
            )
            return
        problem = subject_problem(resource, ctx.patient_id, ctx.full_urls) or status.simple_status(resource)
        if problem is None and day is None:
            problem = "no effective date"
        if problem is None and outside:
            problem = "dated in the future" if day > ctx.today else "not within pregnancy_status_days"
        if problem:
            ctx.trace.exclude(resource, problem, "conditions")
            return
        if coded_as(resource.get("valueCodeableConcept"), PREGNANT_VALUES):
            pregnant = True
            ctx.trace.source("conditions", ref(resource))

    guarded(ctx, of_type(resources, "Observation"), read, "conditions")
    return pregnant


def map_conditions(resources: ByType, ctx: Context) -> ConditionsFact:
    found: set[str] = set()
    if pregnancy_status_says_pregnant(resources, ctx):
        found.add("pregnancy")

    def read(resource: dict[str, Any]) -> None:
        concepts = sorted(concepts_of(resource.get("code")) & set(CONDITION_SETS))
        if not concepts:
            ctx.trace.unclassified(resource, unreadable_code(resource, "code"))
            return
        element = unreadable_element(resource)
        if element:
            ctx.trace.unreadable_unless(
                ruled_out(resource, ctx),
                resource,
                fact_type="conditions",
                label=", ".join(CONDITION_LABELS[c] for c in concepts),
                element=element,
                fields=tuple(f"conditions.{c}" for c in concepts),
            )
            return
        problem = _usable_problem(resource, ctx)
        if problem:
            ctx.trace.exclude(resource, problem, "conditions")
            return
        found.update(concepts)
        ctx.trace.source("conditions", ref(resource))

    guarded(ctx, of_type(resources, "Condition"), read, "conditions")
    return ConditionsFact(**{name: name in found for name in CONDITION_SETS})
