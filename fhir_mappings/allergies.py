"""AllergyIntolerance resources to AllergiesFact (oral iron intolerance, IV iron allergy).

An iron allergy or intolerance whose read elements are malformed makes that fact unknown, unless a
readable element rules it out (another patient's, refuted, entered-in-error, not active).
"""

from __future__ import annotations

from typing import Any

from fhir_mappings import status
from fhir_mappings.context import ByType, Context, guarded, of_type, ref
from fhir_mappings.facts import AllergiesFact
from fhir_mappings.medications import classify
from fhir_mappings.reading import unreadable_code, unreadable_element
from fhir_mappings.references import another_patients, subject_problem

ALLERGY_FIELDS = {"oral_iron": ("oral_iron_intolerance", "oral iron intolerance"), "iv_iron": ("iv_iron_allergy", "IV iron allergy")}


def _status_problem(resource: dict[str, Any], readable_only: bool) -> str | None:
    check = status.readable_clinical_problem if readable_only else status.clinical_problem
    return check(resource, status.ALLERGY_CLINICAL_OK, status.ALLERGY_CLINICAL_SYSTEM, status.ALLERGY_VERIFICATION_SYSTEM)


def map_allergies(resources: ByType, ctx: Context) -> tuple[AllergiesFact, dict[str, list[str]]]:
    """The fact and the names for the cards ({"oral_iron": [...], "iv_iron": [...]})."""
    names: dict[str, list[str]] = {"oral_iron": [], "iv_iron": []}

    def read(resource: dict[str, Any]) -> None:
        match = classify(resource, [resource.get("code")], ctx)
        classes = sorted(match.classes & set(ALLERGY_FIELDS))
        if not classes:
            ctx.trace.unclassified(resource, unreadable_code(resource, "code"))
            return
        element = unreadable_element(resource)
        if element:
            ctx.trace.unreadable_unless(
                another_patients(resource, ctx.patient_id, ctx.full_urls) or _status_problem(resource, readable_only=True),
                resource,
                fact_type="allergies",
                label=", ".join(ALLERGY_FIELDS[c][1] for c in classes),
                element=element,
                fields=tuple(f"allergies.{ALLERGY_FIELDS[c][0]}" for c in classes),
            )
            return
        problem = subject_problem(resource, ctx.patient_id, ctx.full_urls) or _status_problem(resource, readable_only=False)
        if problem:
            ctx.trace.exclude(resource, problem, "allergies")
            return
        for cls in classes:
            if match.name not in names[cls]:
                names[cls].append(match.name)
        ctx.trace.source("allergies", ref(resource))

    guarded(ctx, of_type(resources, "AllergyIntolerance"), read, "allergies")
    fact = AllergiesFact(oral_iron_intolerance=bool(names["oral_iron"]), iv_iron_allergy=bool(names["iv_iron"]))
    return fact, {k: sorted(v) for k, v in names.items()}
