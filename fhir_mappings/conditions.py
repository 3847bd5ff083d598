"""Condition resources to ConditionsFact (RLS, IDA, pregnancy, absorption disorder, iron overload)."""

from __future__ import annotations

from typing import Any

from fhir_mappings import dates, status
from fhir_mappings.context import Context, guarded, of_type, ref
from fhir_mappings.facts import ConditionsFact
from fhir_mappings.references import subject_problem
from fhir_mappings.validation import invalid_reason
from fhir_mappings.valuesets import concepts_of

CONDITION_SETS = ("rls", "ida", "pregnancy", "absorption_disorder", "iron_overload_disorder")


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
    return invalid_reason(resource)


def map_conditions(resources: list[dict[str, Any]], ctx: Context) -> ConditionsFact:
    found: set[str] = set()

    def read(resource: dict[str, Any]) -> None:
        concepts = concepts_of(resource.get("code")) & set(CONDITION_SETS)
        if not concepts:
            return
        problem = _usable_problem(resource, ctx)
        if problem:
            ctx.trace.exclude(resource, problem)
            return
        found.update(concepts)
        ctx.trace.source("conditions", ref(resource))

    guarded(ctx, of_type(resources, "Condition"), read)
    return ConditionsFact(**{name: name in found for name in CONDITION_SETS})
