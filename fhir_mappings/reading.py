"""The elements each fact is built from, typed as FHIR R4 says, and nothing else.

A resource is read through a small pydantic model per resource type that names only the elements
the mappers use: resourceType, id, the subject or patient reference, the status elements, the
codings of the code or medication, the value and its unit, the dates, and the references a fact
follows (medicationReference, priorPrescription). Every other element is ignored, so an empty
`display`, an empty `note`, an unknown extension or a `category` sent as one object instead of a
list never hides a fact.

When one of those elements is malformed, the resource is *unreadable* and `unreadable_element`
names the element (a path such as `code.coding[1].system`, never its value). What follows from
that (a fact becomes unknown) is decided by the mappers.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, StrictBool, StrictStr, StringConstraints, ValidationError

# FHIR R4 primitive syntaxes, checked by pydantic's own (compiled) patterns. A dateTime with a time
# must carry its timezone; seconds may be left out, as the date reader accepts them.
_YEAR_MONTH_DAY = r"\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?"
_TIME = r"T([01]\d|2[0-3]):[0-5]\d(:([0-5]\d|60)(\.\d+)?)?(Z|[+-]((0\d|1[0-3]):[0-5]\d|14:00))"


def _real_day(value: str) -> str:
    """The calendar check a pattern cannot make (2026-02-30)."""
    if len(value) >= 10:
        date(int(value[:4]), int(value[5:7]), int(value[8:10]))  # ValueError when there is no such day
    return value


Code = Annotated[str, StringConstraints(strict=True, pattern=r"^[^\s]+( [^\s]+)*$")]
Uri = Annotated[str, StringConstraints(strict=True, pattern=r"^\S+$")]
Id = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9\-.]{1,64}$")]
DateTime = Annotated[str, StringConstraints(strict=True, pattern=f"^{_YEAR_MONTH_DAY}({_TIME})?$"), AfterValidator(_real_day)]
Date = Annotated[str, StringConstraints(strict=True, pattern=f"^{_YEAR_MONTH_DAY}$"), AfterValidator(_real_day)]


class _Elements(BaseModel):
    """Only the declared elements are checked; everything else in the JSON is ignored."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class Coding(_Elements):
    system: Uri | None = None
    code: Code | None = None


class CodeableConcept(_Elements):
    coding: list[Coding] | None = None


class Reference(_Elements):
    reference: StrictStr | None = None


class Quantity(_Elements):
    value: float | None = None
    comparator: Literal["<", "<=", ">=", ">"] | None = None
    unit: StrictStr | None = None
    system: Uri | None = None
    code: Code | None = None


class Period(_Elements):
    start: DateTime | None = None


class _Resource(_Elements):
    resourceType: StrictStr
    id: Id | None = None


class Observation(_Resource):
    status: Code
    code: CodeableConcept
    subject: Reference | None = None
    effectiveDateTime: DateTime | None = None
    effectiveInstant: DateTime | None = None
    effectivePeriod: Period | None = None
    issued: DateTime | None = None
    valueQuantity: Quantity | None = None
    valueCodeableConcept: CodeableConcept | None = None


class Condition(_Resource):
    clinicalStatus: CodeableConcept | None = None
    verificationStatus: CodeableConcept | None = None
    code: CodeableConcept
    subject: Reference
    onsetDateTime: DateTime | None = None
    abatementDateTime: DateTime | None = None


class AllergyIntolerance(_Resource):
    clinicalStatus: CodeableConcept | None = None
    verificationStatus: CodeableConcept | None = None
    code: CodeableConcept
    patient: Reference


class _MedicationUse(_Resource):
    status: Code
    subject: Reference
    medicationCodeableConcept: CodeableConcept | None = None
    medicationReference: Reference | None = None


class DispenseRequest(_Elements):
    validityPeriod: Period | None = None


class MedicationRequest(_MedicationUse):
    doNotPerform: StrictBool | None = None
    authoredOn: DateTime | None = None
    dispenseRequest: DispenseRequest | None = None
    priorPrescription: Reference | None = None


class MedicationStatement(_MedicationUse):
    effectiveDateTime: DateTime | None = None
    effectivePeriod: Period | None = None


class MedicationAdministration(_MedicationUse):
    effectiveDateTime: DateTime | None = None
    effectivePeriod: Period | None = None


class Ingredient(_Elements):
    itemCodeableConcept: CodeableConcept | None = None


class Medication(_Resource):
    code: CodeableConcept | None = None
    ingredient: list[Ingredient] | None = None


class Patient(_Resource):
    gender: Literal["male", "female", "other", "unknown"] | None = None
    birthDate: Date | None = None


class DraftMedicationRequest(MedicationRequest):
    """A draft order of an order hook: the hook says whose it is and that it is being placed, so
    neither a subject nor a status is required."""

    subject: Reference | None = None  # type: ignore[assignment]
    status: Code | None = None  # type: ignore[assignment]


MODELS: dict[str, type[_Resource]] = {
    model.__name__: model
    for model in (Observation, Condition, AllergyIntolerance, MedicationRequest, MedicationStatement, MedicationAdministration, Medication, Patient)
}


def _path(location: tuple[Any, ...]) -> str:
    """('code', 'coding', 1, 'system') -> 'code.coding[1].system'."""
    out = ""
    for part in location:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out[:120] or "resource"


def _first_malformed(model: type[BaseModel], value: Any, prefix: tuple[Any, ...] = ()) -> str | None:
    """The path of the first element of `value` that `model` refuses, or None when it reads."""
    try:
        model.model_validate(value)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_context=False, include_url=False)
        return _path((*prefix, *errors[0]["loc"])) if errors else _path(prefix)
    except (ValueError, TypeError, RecursionError):
        return _path(prefix)
    return None


def unreadable_code(resource: dict[str, Any], key: str) -> str | None:
    """The path of a malformed coding in `resource[key]` (a CodeableConcept), or None.

    For a resource whose codes matched no value set: when its code cannot be read, nobody can
    tell what it records, and the trace says so.
    """
    return _first_malformed(CodeableConcept, resource[key], (key,)) if key in resource else None


def unreadable_element(resource: dict[str, Any], *, draft: bool = False) -> str | None:
    """The first element read for a fact that is malformed (its path), or None when all are readable.

    `draft` reads a draft order of an order hook (no subject required).
    """
    kind = resource.get("resourceType")
    model = DraftMedicationRequest if draft and kind == "MedicationRequest" else MODELS.get(kind)  # type: ignore[arg-type]
    if model is None:
        return "resourceType"
    return _first_malformed(model, resource)
