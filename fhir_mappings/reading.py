"""The elements each fact is built from, typed as FHIR R4 says, and nothing else.

A resource is read through a small pydantic shape (a TypedDict) per resource type that names
only the elements the mappers use: resourceType, id, the subject or patient reference, the
status elements, the codings of the code or medication, the value and its unit, the dates, and
the references a fact follows (medicationReference, priorPrescription). Every other element is
ignored, so an empty `display`, an empty `note`, an unknown extension or a `category` sent as one
object instead of a list never hides a fact.

When one of those elements is malformed, the resource is *unreadable* and `unreadable_element`
names the element (a path such as `code.coding[1].system`, never its value). What follows from
that (a fact becomes unknown) is decided by the mappers.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, StrictBool, StrictStr, StringConstraints, TypeAdapter, ValidationError, with_config
from typing_extensions import Required, TypedDict

# FHIR R4 primitive syntaxes, checked by pydantic's own (compiled) patterns. A dateTime with a time
# must carry its timezone; seconds may be left out, as the date reader accepts them.
#
# A full date must be a real calendar day (no 2026-02-30, no year 0): the pattern says so itself,
# so that no Python code runs per date (a chart of a few hundred resources has hundreds of dates).
# Days 01-28 exist in every month, 29 and 30 in every month but February, 31 in seven months, and
# 29 February in leap years: divisible by 4 and not by 100, or divisible by 400.
# tests/test_fhir_reading.py compares it with Python's calendar on every day of many years.
_YEAR = r"([1-9]\d{3}|0[1-9]\d\d|00[1-9]\d|000[1-9])"
_LEAP_YEAR = r"(\d\d(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)"
_DAY = rf"({_YEAR}-((0[1-9]|1[0-2])-(0[1-9]|1\d|2[0-8])|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31)|{_LEAP_YEAR}-02-29)"
_YEAR_MONTH_DAY = rf"(\d{{4}}|\d{{4}}-(0[1-9]|1[0-2])|{_DAY})"
_TIME = r"T([01]\d|2[0-3]):[0-5]\d(:([0-5]\d|60)(\.\d+)?)?(Z|[+-]((0\d|1[0-3]):[0-5]\d|14:00))"


Code = Annotated[str, StringConstraints(strict=True, pattern=r"^[^\s]+( [^\s]+)*$")]
Uri = Annotated[str, StringConstraints(strict=True, pattern=r"^\S+$")]
Id = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9\-.]{1,64}$")]
DateTime = Annotated[str, StringConstraints(strict=True, pattern=f"^{_YEAR_MONTH_DAY}({_TIME})?$")]
Date = Annotated[str, StringConstraints(strict=True, pattern=f"^{_YEAR_MONTH_DAY}$")]


# Each shape is a TypedDict validated by a TypeAdapter: only its keys are checked, everything else
# in the JSON is ignored, and no model object is built (validation is all that is wanted of it).
_ELEMENTS = ConfigDict(extra="ignore", strict=True)


@with_config(_ELEMENTS)
class Coding(TypedDict, total=False):
    system: Uri | None
    code: Code | None


@with_config(_ELEMENTS)
class CodeableConcept(TypedDict, total=False):
    coding: list[Coding] | None


@with_config(_ELEMENTS)
class Reference(TypedDict, total=False):
    reference: StrictStr | None


@with_config(_ELEMENTS)
class Quantity(TypedDict, total=False):
    value: float | None
    comparator: Literal["<", "<=", ">=", ">"] | None
    unit: StrictStr | None
    system: Uri | None
    code: Code | None


@with_config(_ELEMENTS)
class Period(TypedDict, total=False):
    start: DateTime | None


@with_config(_ELEMENTS)
class _Resource(TypedDict, total=False):
    resourceType: Required[StrictStr]
    id: Id | None


class Observation(_Resource, total=False):
    status: Required[Code]
    code: Required[CodeableConcept]
    subject: Reference | None
    effectiveDateTime: DateTime | None
    effectiveInstant: DateTime | None
    effectivePeriod: Period | None
    issued: DateTime | None
    valueQuantity: Quantity | None
    valueCodeableConcept: CodeableConcept | None


class Condition(_Resource, total=False):
    clinicalStatus: CodeableConcept | None
    verificationStatus: CodeableConcept | None
    code: Required[CodeableConcept]
    subject: Required[Reference]
    onsetDateTime: DateTime | None
    abatementDateTime: DateTime | None


class AllergyIntolerance(_Resource, total=False):
    clinicalStatus: CodeableConcept | None
    verificationStatus: CodeableConcept | None
    code: Required[CodeableConcept]
    patient: Required[Reference]


class _MedicationUse(_Resource, total=False):
    medicationCodeableConcept: CodeableConcept | None
    medicationReference: Reference | None


class _SubjectAndStatus(_MedicationUse, total=False):
    status: Required[Code]
    subject: Required[Reference]


@with_config(_ELEMENTS)
class DispenseRequest(TypedDict, total=False):
    validityPeriod: Period | None


class _Request(_MedicationUse, total=False):
    doNotPerform: StrictBool | None
    authoredOn: DateTime | None
    dispenseRequest: DispenseRequest | None
    priorPrescription: Reference | None


class MedicationRequest(_Request, _SubjectAndStatus, total=False):
    pass


class DraftMedicationRequest(_Request, total=False):
    """A draft order of an order hook: the hook says whose it is and that it is being placed, so
    neither a subject nor a status is required."""

    status: Code | None
    subject: Reference | None


class MedicationStatement(_SubjectAndStatus, total=False):
    effectiveDateTime: DateTime | None
    effectivePeriod: Period | None


class MedicationAdministration(_SubjectAndStatus, total=False):
    effectiveDateTime: DateTime | None
    effectivePeriod: Period | None


@with_config(_ELEMENTS)
class Ingredient(TypedDict, total=False):
    itemCodeableConcept: CodeableConcept | None


class Medication(_Resource, total=False):
    code: CodeableConcept | None
    ingredient: list[Ingredient] | None


class Patient(_Resource, total=False):
    gender: Literal["male", "female", "other", "unknown"] | None
    birthDate: Date | None


READERS: dict[str, TypeAdapter[Any]] = {
    shape.__name__: TypeAdapter(shape)
    for shape in (Observation, Condition, AllergyIntolerance, MedicationRequest, MedicationStatement, MedicationAdministration, Medication, Patient)
}
DRAFT_READER: TypeAdapter[Any] = TypeAdapter(DraftMedicationRequest)
CODE_READER: TypeAdapter[Any] = TypeAdapter(CodeableConcept)


def _path(location: tuple[Any, ...]) -> str:
    """('code', 'coding', 1, 'system') -> 'code.coding[1].system'."""
    out = ""
    for part in location:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out[:120] or "resource"


def _first_malformed(reader: TypeAdapter[Any], value: Any, prefix: tuple[Any, ...] = ()) -> str | None:
    """The path of the first element of `value` that `reader` refuses, or None when it reads."""
    try:
        reader.validator.validate_python(value)  # the compiled validator itself: no wrapper per resource
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
    return _first_malformed(CODE_READER, resource[key], (key,)) if key in resource else None


def unreadable_element(resource: dict[str, Any], *, draft: bool = False) -> str | None:
    """The first element read for a fact that is malformed (its path), or None when all are readable.

    `draft` reads a draft order of an order hook (no subject required).
    """
    kind = resource.get("resourceType")
    reader = DRAFT_READER if draft and kind == "MedicationRequest" else READERS.get(kind)  # type: ignore[arg-type]
    if reader is None:
        return "resourceType"
    return _first_malformed(reader, resource)
