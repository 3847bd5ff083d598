"""AllergyIntolerance resources to AllergiesFact (oral iron intolerance, IV iron allergy)."""

from __future__ import annotations

from typing import Any

from fhir_mappings import status
from fhir_mappings.context import Context, guarded, of_type, ref
from fhir_mappings.facts import AllergiesFact
from fhir_mappings.medications import classify
from fhir_mappings.references import subject_problem
from fhir_mappings.validation import invalid_reason


def map_allergies(resources: list[dict[str, Any]], ctx: Context) -> tuple[AllergiesFact, dict[str, list[str]]]:
    """The fact and the names for the cards ({"oral_iron": [...], "iv_iron": [...]})."""
    names: dict[str, list[str]] = {"oral_iron": [], "iv_iron": []}

    def read(resource: dict[str, Any]) -> None:
        match = classify(resource, [resource.get("code")], ctx)
        classes = match.classes & {"oral_iron", "iv_iron"}
        if not classes:
            return
        problem = subject_problem(resource, ctx.patient_id, ctx.full_urls) or status.clinical_problem(
            resource, status.ALLERGY_CLINICAL_OK, status.ALLERGY_CLINICAL_SYSTEM, status.ALLERGY_VERIFICATION_SYSTEM
        ) or invalid_reason(resource)
        if problem:
            ctx.trace.exclude(resource, problem)
            return
        for cls in sorted(classes):
            if match.name not in names[cls]:
                names[cls].append(match.name)
        ctx.trace.source("allergies", ref(resource))

    guarded(ctx, of_type(resources, "AllergyIntolerance"), read)
    fact = AllergiesFact(oral_iron_intolerance=bool(names["oral_iron"]), iv_iron_allergy=bool(names["iv_iron"]))
    return fact, {k: sorted(v) for k, v in names.items()}
