"""The facts the rules see: small, flat, typed records built only by this package.

This module is the contract between `fhir_mappings` (which builds facts from FHIR)
and the rule files in `rules/` (which compare their fields). Every fact type is a
singleton: exactly one record of each type exists for every evaluation, so a rule
never has to test for the *absence* of a record (the engine-level negation that
durable-rules gets wrong). Absence is a field instead (`ferritin.current` false).

Numbers are already in canonical units (the unit is in the field name), dates are
already turned into day counts against the request time, and derived booleans are
computed in Python where they can be unit-tested. A numeric field is `None` when
the data does not exist; a comparison on `None` is false in every evaluator.

Field documentation (`doc` metadata) is read by `cds-service rules lint` and by the
rule catalog, so it is written for auditors.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any, ClassVar, Mapping, Union

Scalar = Union[bool, int, float, str, None]


def doc(text: str, default: Any = None) -> Any:
    """A dataclass field with a default and auditor-facing documentation."""
    return field(default=default, metadata={"doc": text})


@dataclass(frozen=True)
class PatientFact:
    """Demographics: age and administrative sex."""

    type_name: ClassVar[str] = "patient"
    age_known: bool = doc("Patient.birthDate is present and usable", False)
    age_years: int | None = doc("completed years at the request time (a partial birthDate counts from its last possible day)")
    age_months: int | None = doc("completed months at the request time")
    is_child: bool = doc("age known and under 18 years (safety rule 3)", False)
    sex: str = doc("male, female or unknown (Patient.gender other, unknown or missing)", "unknown")


@dataclass(frozen=True)
class ConditionsFact:
    """Usable Conditions (clinicalStatus active, recurrence or relapse; not refuted nor entered-in-error)."""

    type_name: ClassVar[str] = "conditions"
    rls: bool = doc("restless legs syndrome (SNOMED 32914008, ICD-10-CM G25.81)", False)
    ida: bool = doc("iron deficiency anemia condition (SNOMED 87522002, ICD-10-CM D50 and children)", False)
    pregnancy: bool = doc("active pregnancy (SNOMED 77386006, 72892002, 47200007; ICD-10-CM Z33.1, Z34 and O09 with their children), or a pregnancy status Observation (LOINC 82810-3) saying pregnant within pregnancy_status_days", False)
    absorption_disorder: bool = doc("celiac, Crohn's, ulcerative colitis, malabsorption or bariatric surgery history", False)
    iron_overload_disorder: bool = doc("hemochromatosis (ICD-10-CM E83.11 and children)", False)


@dataclass(frozen=True)
class AllergiesFact:
    """Usable AllergyIntolerances (clinicalStatus active; not refuted nor entered-in-error)."""

    type_name: ClassVar[str] = "allergies"
    oral_iron_intolerance: bool = doc("allergy or intolerance to an oral iron product or ingredient", False)
    iv_iron_allergy: bool = doc("allergy or intolerance to an IV iron product or ingredient", False)


@dataclass(frozen=True)
class FerritinFact:
    """The latest current usable ferritin result."""

    type_name: ClassVar[str] = "ferritin"
    current: bool = doc("a usable ferritin exists within ferritin_lookback_days", False)
    value_ug_per_l: float | None = doc("latest current ferritin in ug/L (= ng/mL = mcg/L)")
    days_ago: int | None = doc("days between the result's effective date and now")
    days_since_oral_start: int | None = doc("days from the start of the oral iron course to this result (None when not on oral iron)")
    days_since_iv_iron: int | None = doc("days from the most recent IV iron to this result (None without IV iron, or when the result predates the most recent IV iron)")
    date: str | None = doc("effective date, YYYY-MM-DD (UTC)")
    value_display: str | None = doc("value and unit as reported, for card text")


@dataclass(frozen=True)
class HemoglobinFact:
    """The latest current usable hemoglobin result and the patient's anemia threshold (WHO 2024)."""

    type_name: ClassVar[str] = "hemoglobin"
    current: bool = doc("a usable hemoglobin exists within hb_lookback_days", False)
    value_g_dl: float | None = doc("latest current hemoglobin in g/dL")
    days_ago: int | None = doc("days between the result's effective date and now")
    threshold_g_dl: float | None = doc("the patient's anemia threshold (None under 6 months; unknown age uses the adult threshold for the sex)")
    anemic: bool = doc("current hemoglobin below the patient's threshold", False)
    date: str | None = doc("effective date, YYYY-MM-DD (UTC)")
    value_display: str | None = doc("value and unit as reported, for card text")


@dataclass(frozen=True)
class TsatFact:
    """The latest current transferrin saturation, measured or derived from same-day iron and TIBC."""

    type_name: ClassVar[str] = "tsat"
    current: bool = doc("a usable TSAT exists within tsat_lookback_days", False)
    value_pct: float | None = doc("latest current TSAT in %")
    days_ago: int | None = doc("days between the result's effective date and now")
    derived: bool = doc("computed as serum iron / TIBC x 100 from a same-day pair", False)
    date: str | None = doc("effective date, YYYY-MM-DD (UTC)")
    value_display: str | None = doc("value as reported, for card text")


@dataclass(frozen=True)
class OralIronFact:
    """Oral iron therapy: active orders and statements from the EHR, plus draft orders of an order hook."""

    type_name: ClassVar[str] = "oral_iron"
    active: bool = doc("on oral iron: an active order or statement, or a draft order in this hook", False)
    on_record: bool = doc("an active oral iron order or statement in the EHR's data (drafts excluded)", False)
    days: int | None = doc("days on oral iron, from the earliest start of the course (renewals followed)")
    draft: bool = doc("a draft oral iron order is being selected or signed in this hook", False)


@dataclass(frozen=True)
class IvIronFact:
    """IV iron: administrations, orders and statements, plus draft IV iron orders."""

    type_name: ClassVar[str] = "iv_iron"
    recent: bool = doc("IV iron given or ordered within iv_relief_days (drafts excluded)", False)
    days_since: int | None = doc("days since the most recent IV iron")
    draft: bool = doc("a draft IV iron order is being selected or signed in this hook", False)


@dataclass(frozen=True)
class MedicationsFact:
    """Other medications that the RLS rules look at."""

    type_name: ClassVar[str] = "medications"
    dopamine_agonist: bool = doc("an active pramipexole, ropinirole or rotigotine order or statement (drafts included)", False)
    draft_dopamine_agonist: bool = doc("a draft dopamine agonist order in this hook", False)
    aggravating: bool = doc("an active RLS-aggravating medication (antidepressant, sedating antihistamine, dopamine antagonist; drafts included; never bupropion)", False)


@dataclass(frozen=True)
class ContextFact:
    """The invocation itself."""

    type_name: ClassVar[str] = "context"
    hook: str = doc("patient-view, order-select or order-sign", "patient-view")
    order_hook: bool = doc("the hook is order-select or order-sign", False)


@dataclass(frozen=True)
class RecordFact:
    """How far the chart could be read: a resource whose elements could not be read makes a fact unknown."""

    type_name: ClassVar[str] = "record"
    unreadable: bool = doc("a resource with a code of a value set, or the context Patient, could not be read, so some fact is unknown", False)
    pregnancy_unknown: bool = doc("a pregnancy record could not be read, so whether the patient is pregnant is unknown", False)


FACT_TYPES: tuple[type, ...] = (
    PatientFact,
    ConditionsFact,
    AllergiesFact,
    FerritinFact,
    HemoglobinFact,
    TsatFact,
    OralIronFact,
    IvIronFact,
    MedicationsFact,
    ContextFact,
    RecordFact,
)
FACT_TYPES_BY_NAME: dict[str, type] = {t.type_name: t for t in FACT_TYPES}


_FIELD_NAMES: tuple[tuple[str, tuple[str, ...]], ...] = tuple(
    (t.type_name, tuple(f.name for f in fields(t))) for t in FACT_TYPES
)


def fact_schema() -> dict[str, dict[str, dict[str, str]]]:
    """Fact type -> field -> {"type": python type name, "doc": text}; for lint and the catalog."""
    schema: dict[str, dict[str, dict[str, str]]] = {}
    for fact_type in FACT_TYPES:
        schema[fact_type.type_name] = {
            f.name: {"type": str(f.type), "doc": f.metadata.get("doc", "")} for f in fields(fact_type)
        }
    return schema


@dataclass(frozen=True)
class Exclusion:
    """A resource that was dropped or judged unusable, and why. Never carries patient values."""

    resource_type: str
    resource_id: str
    reason: str
    fact: str = ""
    """The fact type the resource would have fed (empty when it fed none)."""


@dataclass(frozen=True)
class Unreadable:
    """A resource of a value set (or the context Patient) with a malformed element that a fact is
    built from: the fact it would have given is unknown. Never carries patient values."""

    resource_type: str
    resource_id: str
    fact: str
    """What the resource would have told, in words ("iron overload disorder", "ferritin", "age")."""
    element: str
    """The element that could not be read (`code.coding[0].system`, `birthDate`)."""
    unknown: tuple[str, ...]
    """The fact fields (`conditions.pregnancy`) or whole fact types (`ferritin`) it makes unknown."""

    @property
    def reference(self) -> str:
        return f"{self.resource_type}/{self.resource_id}"


@dataclass(frozen=True)
class Evidence:
    """Details the cards need that the rules never compare (names, ids, order references)."""

    active_iron_request_ids: tuple[str, ...] = ()
    """MedicationRequest ids from the EHR's data (never drafts) of active iron therapy; `iron-overload-risk` may offer to delete them."""
    aggravating_medication_names: tuple[str, ...] = ()
    oral_iron_intolerance_names: tuple[str, ...] = ()
    iv_iron_allergy_names: tuple[str, ...] = ()
    dopamine_agonist_names: tuple[str, ...] = ()
    oral_iron_start_date: str | None = None
    """Start of the oral iron course (YYYY-MM-DD): the recheck window counts from it."""
    iv_iron_date: str | None = None


@dataclass(frozen=True)
class FactSet:
    """Everything the mapping layer hands on: the facts, where each came from, and what was left out."""

    patient: PatientFact = PatientFact()
    conditions: ConditionsFact = ConditionsFact()
    allergies: AllergiesFact = AllergiesFact()
    ferritin: FerritinFact = FerritinFact()
    hemoglobin: HemoglobinFact = HemoglobinFact()
    tsat: TsatFact = TsatFact()
    oral_iron: OralIronFact = OralIronFact()
    iv_iron: IvIronFact = IvIronFact()
    medications: MedicationsFact = MedicationsFact()
    context: ContextFact = ContextFact()
    record: RecordFact = RecordFact()
    sources: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Fact type -> the resource references (`Observation/abc`) it was built from."""
    evidence: Evidence = Evidence()
    exclusions: tuple[Exclusion, ...] = ()
    notes: tuple[str, ...] = ()
    """Trace notes without patient values (e.g. "sex unknown: 12.0 g/dL threshold used")."""
    unknown: tuple[str, ...] = ()
    """Fact types (`ferritin`) or fields (`conditions.pregnancy`) whose source data is unknown: an
    OperationOutcome in place of a prefetch key, or an unreadable resource. A rule whose answer
    depends on them stays silent, and the trace says so."""
    unreadable: tuple[Unreadable, ...] = ()
    """The unreadable resources that made a fact unknown (the review-unreadable-record card names them)."""

    def fact(self, type_name: str) -> Any:
        return getattr(self, type_name)

    @cached_property
    def engine_view(self) -> Mapping[str, Mapping[str, Scalar]]:
        """`to_engine()` made once for this fact set, for readers that only read (cards, the decision log)."""
        return self.to_engine()

    def to_engine(self) -> dict[str, dict[str, Scalar]]:
        """Fact type -> field -> scalar value: the only form the evaluators see (a fresh copy)."""
        return {
            type_name: {name: getattr(record, name) for name in names}
            for type_name, names in _FIELD_NAMES
            for record in (getattr(self, type_name),)
        }
