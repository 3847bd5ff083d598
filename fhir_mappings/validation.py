"""FHIR R4 validation (fhir.resources.R4B) of the resources that can become facts.

Full validation costs about 86 us per Observation, so callers validate only candidates: resources
whose type and code already make them relevant, and for lab results lazily, newest first, until
the latest usable one is found. The reason names the first invalid field, never its value.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import orjson

from pydantic import ValidationError
from fhir.resources.R4B.allergyintolerance import AllergyIntolerance
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.medication import Medication
from fhir.resources.R4B.medicationadministration import MedicationAdministration
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.medicationstatement import MedicationStatement
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient

# fhir.resources reports a missing or doubled choice element ([x]) without a location, naming its variants.
_CHOICE = re.compile(r"from this list \['([a-z][A-Za-z]*?)(?:DateTime|Period|Instant|Timing|CodeableConcept|Reference|Quantity|String|Boolean|Date|Range|Ratio|SampledData|Time|Integer|Age)'")

MODELS = {
    "AllergyIntolerance": AllergyIntolerance,
    "Condition": Condition,
    "Medication": Medication,
    "MedicationAdministration": MedicationAdministration,
    "MedicationRequest": MedicationRequest,
    "MedicationStatement": MedicationStatement,
    "Observation": Observation,
    "Patient": Patient,
}


VALIDATION_CACHE_SIZE = 8192


def invalid_reason(resource: dict[str, Any]) -> str | None:
    """`invalid FHIR: <field>` when the resource is not valid FHIR R4, else None.

    Memoised by the resource's exact content: an EHR sends the same chart every time it is
    opened, and validation is a pure function of the JSON, so a resource seen before is not
    validated again. The key is the canonical JSON (sorted keys); a resource orjson cannot
    serialise is validated without the cache.
    """
    try:
        key = orjson.dumps(resource, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return _validate(resource)
    return _validate_cached(key)


@lru_cache(maxsize=VALIDATION_CACHE_SIZE)
def _validate_cached(key: bytes) -> str | None:
    return _validate(orjson.loads(key))


def _validate(resource: dict[str, Any]) -> str | None:
    model = MODELS.get(resource.get("resourceType"))  # type: ignore[arg-type]
    if model is None:
        return "invalid FHIR: resourceType"
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_context=False)
        first = errors[0] if errors else {}
        field = ".".join(str(p) for p in first.get("loc", ()) if not isinstance(p, int))[:80]
        if not field:
            choice = _CHOICE.search(str(first.get("msg", "")))
            field = f"{choice.group(1)}[x]" if choice else "resource"
        return f"invalid FHIR: {field}"
    except (ValueError, TypeError, RecursionError):
        return "invalid FHIR: resource"
    return None
