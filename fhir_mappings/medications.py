"""MedicationRequest/Statement/Administration and draft orders to the therapy facts.

Matching: codes decide first (any coding of the medication in a medication value set); only when
no coding is in any of them does the name matcher look at the text and displays, and the trace
records that the name matched. An iron-like name that matches nothing is a trace warning.

Intent never keeps an order out: a draft is the order being placed whatever its intent, and an
active EHR order with intent plan or proposal is therapy the chart holds (counting it avoids
suggesting a duplicate start and keeps the overload checks on). A medication resource whose read
elements are malformed makes the therapy facts of its classes unknown, unless a readable element
rules it out (another patient's, a status under which it never counts, doNotPerform).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from fhir_mappings import dates, status
from fhir_mappings.context import ByType, Context, guarded, of_type, ref, rid
from fhir_mappings.facts import IvIronFact, MedicationsFact, OralIronFact
from fhir_mappings.reading import unreadable_code, unreadable_element
from fhir_mappings.references import another_patients, resolve, subject_problem
from fhir_mappings.valuesets import concepts_for_name, concepts_of, looks_like_iron, texts_of

MEDICATION_SETS = frozenset({"oral_iron", "iv_iron", "dopamine_agonist", "rls_aggravating"})
# Statuses of an earlier order that still make it the start of a renewed course (a cancelled one was never taken).
CHAIN_STATUS = frozenset({"active", "completed", "stopped", "on-hold"})
MED_TYPES = ("MedicationRequest", "MedicationStatement", "MedicationAdministration")
IV_STATUS = {
    "MedicationRequest": frozenset({"active", "completed"}),
    "MedicationStatement": frozenset({"active", "completed"}),
    "MedicationAdministration": frozenset({"completed", "in-progress"}),
}
CLASS_LABELS = {
    "oral_iron": "oral iron therapy",
    "iv_iron": "IV iron therapy",
    "dopamine_agonist": "dopamine agonist",
    "rls_aggravating": "RLS-aggravating medication",
}


@dataclass(frozen=True)
class Match:
    classes: frozenset[str]
    name: str
    by_name: bool = False


@dataclass(frozen=True)
class Concepts:
    """The CodeableConcepts naming the drug (code and ingredients) and, when the drug is a
    referenced or contained Medication, the first of its read elements that is malformed."""

    concepts: list[Any]
    unreadable: str | None = None


def _medication_concepts(resource: dict[str, Any], medications: dict[str, dict[str, Any]], ctx: Context) -> Concepts | str:
    """The drug's concepts, or why the medication reference failed."""
    if "medicationCodeableConcept" in resource:
        return Concepts([resource.get("medicationCodeableConcept")])
    reference = resource.get("medicationReference")
    if not isinstance(reference, dict):
        return "no medication"
    target_ref = reference.get("reference")
    medication: Any = None
    if isinstance(target_ref, str) and target_ref.startswith("#"):
        contained = resource.get("contained")
        for item in contained if isinstance(contained, list) else []:
            if isinstance(item, dict) and item.get("resourceType") == "Medication" and item.get("id") == target_ref[1:]:
                medication = item
    else:
        target = resolve(target_ref, ctx.full_urls)
        medication = medications.get(target) if target else None
    if medication is None:
        return "medicationReference not resolved"
    concepts = [medication.get("code")]
    ingredients = medication.get("ingredient")
    for ingredient in ingredients if isinstance(ingredients, list) else []:
        if isinstance(ingredient, dict):
            concepts.append(ingredient.get("itemCodeableConcept"))
    if isinstance(reference.get("display"), str):
        concepts.append({"text": reference["display"]})
    element = unreadable_element(medication)
    return Concepts(concepts, f"medicationReference -> Medication.{element}" if element else None)


def classify(resource: dict[str, Any], concepts: list[Any], ctx: Context) -> Match:
    """Which medication value sets the drug belongs to: by code, else by name (noted)."""
    by_code: set[str] = set()
    for concept in concepts:
        by_code |= concepts_of(concept) & MEDICATION_SETS
    names = texts_of(concepts)
    name = names[0][:80] if names else "unnamed medication"
    if by_code:
        return Match(frozenset(by_code), name)
    by_name: set[str] = set()
    for text in names:
        by_name |= concepts_for_name(text) & MEDICATION_SETS
    if by_name:
        ctx.trace.note(f"{ref(resource)}: matched by name, no coding in a value set ({', '.join(sorted(by_name))})")
        return Match(frozenset(by_name), name, by_name=True)
    if any(looks_like_iron(text) for text in names):
        ctx.trace.note(f"warning: {ref(resource)}: iron-like medication name matches no value set")
    return Match(frozenset(), name)


@dataclass
class Use:
    """One medication resource that counts, with the date that matters for it."""

    resource: dict[str, Any]
    match: Match
    day: date | None = None
    draft: bool = False


@dataclass
class Therapy:
    oral: list[Use] = field(default_factory=list)
    iv: list[Use] = field(default_factory=list)
    dopamine: list[Use] = field(default_factory=list)
    aggravating: list[Use] = field(default_factory=list)
    oral_orders: dict[str, Use] = field(default_factory=dict)
    """Every oral iron MedicationRequest of the patient by id (any status): for priorPrescription chains."""
    chain_ids: set[str] = field(default_factory=set)
    """Earlier orders that a renewal chain used (not excluded although not active)."""


def _oral_start(resource: dict[str, Any]) -> date | None:
    if resource.get("resourceType") == "MedicationStatement":
        return dates.effective_date(resource)
    dispense = resource.get("dispenseRequest")
    validity = dispense.get("validityPeriod") if isinstance(dispense, dict) else None
    start = dates.period_start(validity)
    return start if start is not None else dates.utc_date(resource.get("authoredOn"))


def _iv_date(resource: dict[str, Any]) -> date | None:
    if resource.get("resourceType") == "MedicationRequest":
        return dates.utc_date(resource.get("authoredOn"))
    return dates.effective_date(resource)


def _gate(resource: dict[str, Any], ctx: Context, draft: bool) -> str | None:
    """Identity and order semantics: the checks every readable medication use passes."""
    problem = subject_problem(resource, ctx.patient_id, ctx.full_urls, required=not draft)
    if problem:
        return problem
    if resource.get("status") == "entered-in-error":
        return "entered-in-error"
    if resource.get("resourceType") == "MedicationRequest" and resource.get("doNotPerform") is True:
        return "doNotPerform"
    return None


def _fact_of(classes: frozenset[str]) -> str:
    """The fact type an exclusion of this medication is listed under."""
    for cls, fact in (("oral_iron", "oral_iron"), ("iv_iron", "iv_iron")):
        if cls in classes:
            return fact
    return "medications"


def _could_count(kind: Any, state: str, classes: frozenset[str]) -> bool:
    """Whether a medication use with this readable status could feed any fact of its classes."""
    if state == "active" and kind in ("MedicationRequest", "MedicationStatement"):
        return True
    if "oral_iron" in classes and kind == "MedicationRequest" and state in CHAIN_STATUS:
        return True  # an earlier order of a renewal chain sets the course start
    return "iv_iron" in classes and state in IV_STATUS.get(kind, ())


def _ruled_out(resource: dict[str, Any], classes: frozenset[str], ctx: Context, draft: bool) -> str | None:
    """What a readable element of an unreadable medication use says against it, or None."""
    other = another_patients(resource, ctx.patient_id, ctx.full_urls)
    if other:
        return other
    if resource.get("doNotPerform") is True and resource.get("resourceType") == "MedicationRequest":
        return "doNotPerform"
    state = status.readable_code(resource.get("status"))
    if state is None:
        return None
    if state == "entered-in-error":
        return state
    if not draft and not _could_count(resource.get("resourceType"), state, classes):
        return f"status {state}"
    return None


def _unknown_fields(classes: frozenset[str], draft: bool) -> tuple[str, ...]:
    """The fact fields an unreadable medication use of these classes leaves unknown."""
    fields: list[str] = []
    if "oral_iron" in classes:
        fields += ["oral_iron.active", "oral_iron.draft" if draft else "oral_iron.on_record", "oral_iron.days", "ferritin.days_since_oral_start"]
    if "iv_iron" in classes:
        fields += ["iv_iron.draft"] if draft else ["iv_iron.recent", "iv_iron.days_since", "ferritin.days_since_iv_iron"]
    if "dopamine_agonist" in classes:
        fields += ["medications.dopamine_agonist"] + (["medications.draft_dopamine_agonist"] if draft else [])
    if "rls_aggravating" in classes:
        fields.append("medications.aggravating")
    return tuple(fields)


def collect(resources: ByType, drafts: ByType, ctx: Context) -> Therapy:
    medications = {f"Medication/{rid(m)}": m for m in of_type(resources, "Medication")}
    therapy = Therapy()

    def read(resource: dict[str, Any], draft: bool = False) -> None:
        found = _medication_concepts(resource, medications, ctx)
        if isinstance(found, str):
            if resource.get("resourceType") in MED_TYPES:
                ctx.trace.exclude(resource, found)
            return
        match = classify(resource, found.concepts, ctx)
        if not match.classes:
            ctx.trace.unclassified(resource, unreadable_code(resource, "medicationCodeableConcept"))
            return
        fact = _fact_of(match.classes)
        element = unreadable_element(resource, draft=draft) or found.unreadable
        if element:
            label = ", ".join(CLASS_LABELS[c] for c in sorted(match.classes))
            ctx.trace.unreadable_unless(
                _ruled_out(resource, match.classes, ctx, draft),
                resource,
                fact_type=fact,
                label=f"{label} (order being placed)" if draft else label,
                element=element,
                fields=_unknown_fields(match.classes, draft),
            )
            return
        problem = _gate(resource, ctx, draft)
        if problem:
            ctx.trace.exclude(resource, problem, fact)
            return
        kind, state = resource.get("resourceType"), status.text_or_none(resource.get("status"))
        if draft:
            use = Use(resource, match, ctx.today, draft=True)
            for cls, bucket in (("oral_iron", therapy.oral), ("iv_iron", therapy.iv), ("dopamine_agonist", therapy.dopamine), ("rls_aggravating", therapy.aggravating)):
                if cls in match.classes:
                    bucket.append(use)
            return
        counted = False
        if "oral_iron" in match.classes and kind in ("MedicationRequest", "MedicationStatement"):
            start = _oral_start(resource)
            use = Use(resource, match, start)
            if kind == "MedicationRequest":
                therapy.oral_orders[rid(resource)] = use
            if state == "active":
                therapy.oral.append(use)
                counted = True
        if "iv_iron" in match.classes and state in IV_STATUS.get(kind, ()):
            day = _iv_date(resource)
            if day is None:  # it may have been recent: unknown, never "no IV iron"
                element = "authoredOn (missing)" if kind == "MedicationRequest" else "effective[x] (missing)"
                ctx.trace.unknown(resource, fact_type="iv_iron", label=CLASS_LABELS["iv_iron"], element=element, fields=_unknown_fields(frozenset({"iv_iron"}), False))
                return
            if day > ctx.today:
                ctx.trace.exclude(resource, "dated in the future", "iv_iron")
                return
            therapy.iv.append(Use(resource, match, day))
            counted = True
        if state == "active" and kind in ("MedicationRequest", "MedicationStatement"):
            if "dopamine_agonist" in match.classes:
                therapy.dopamine.append(Use(resource, match))
                counted = True
            if "rls_aggravating" in match.classes:
                therapy.aggravating.append(Use(resource, match))
                counted = True
        if not counted and kind == "MedicationAdministration" and "iv_iron" not in match.classes:
            ctx.trace.exclude(resource, "administrations count for IV iron only", fact)
        elif not counted and not (kind == "MedicationRequest" and "oral_iron" in match.classes):
            ctx.trace.exclude(resource, f"status {state}" if isinstance(state, str) and len(state) <= 32 else "status missing or unreadable", fact)

    guarded(ctx, of_type(resources, *MED_TYPES), read)
    guarded(ctx, of_type(drafts, "MedicationRequest"), lambda r: read(r, draft=True))
    return therapy


def _course_start(use: Use, therapy: Therapy, ctx: Context) -> date:
    """Start of the course this active order belongs to: renewals (priorPrescription) followed."""
    start = use.day
    seen = {rid(use.resource)}
    current = use.resource
    while True:
        prior = current.get("priorPrescription")
        target = resolve(prior.get("reference"), ctx.full_urls) if isinstance(prior, dict) else None
        if not target or not target.startswith("MedicationRequest/"):
            break
        prior_id = target.split("/", 1)[1]
        if prior_id in seen or prior_id not in therapy.oral_orders:
            break
        earlier = therapy.oral_orders[prior_id]
        if status.text_or_none(earlier.resource.get("status")) not in CHAIN_STATUS:
            break
        seen.add(prior_id)
        therapy.chain_ids.add(prior_id)
        ctx.trace.source("oral_iron", f"MedicationRequest/{prior_id}")
        if earlier.day is not None and (start is None or earlier.day < start):
            start = earlier.day
        current = earlier.resource
    if start is None:
        ctx.trace.note(f"{ref(use.resource)}: no start date, counts from today")
        return ctx.today
    if start > ctx.today:
        ctx.trace.note(f"{ref(use.resource)}: start date in the future, counts from today")
        return ctx.today
    return start


@dataclass(frozen=True)
class TherapyFacts:
    oral_iron: OralIronFact
    iv_iron: IvIronFact
    medications: MedicationsFact
    oral_start: date | None
    iv_dates: tuple[date, ...]
    evidence: dict[str, Any]


def _names(uses: list[Use]) -> tuple[str, ...]:
    return tuple(sorted({u.match.name for u in uses}))


def therapy_facts(therapy: Therapy, ctx: Context) -> TherapyFacts:
    on_record = [u for u in therapy.oral if not u.draft]
    oral_drafts = [u for u in therapy.oral if u.draft]
    starts = [_course_start(u, therapy, ctx) for u in on_record] + [ctx.today for _ in oral_drafts]
    oral_start = min(starts) if starts else None
    for order_id, use in sorted(therapy.oral_orders.items()):
        state = status.text_or_none(use.resource.get("status"))
        if state != "active" and order_id not in therapy.chain_ids:
            ctx.trace.exclude(use.resource, f"status {state}" if isinstance(state, str) and len(state) <= 32 else "status missing or unreadable", "oral_iron")
    for use in therapy.oral:
        ctx.trace.source("oral_iron", ref(use.resource))
    iv_record = [u for u in therapy.iv if not u.draft]
    iv_dates = tuple(sorted(u.day for u in iv_record if u.day is not None))
    last_iv = iv_dates[-1] if iv_dates else None
    iv_days = ctx.days_ago(last_iv) if last_iv else None
    for use in therapy.iv:
        ctx.trace.source("iv_iron", ref(use.resource))
    for use in therapy.dopamine + therapy.aggravating:
        ctx.trace.source("medications", ref(use.resource))
    active_requests = sorted(
        {
            rid(u.resource)
            for u in on_record + iv_record
            if u.resource.get("resourceType") == "MedicationRequest" and u.resource.get("status") == "active"
        }
    )
    return TherapyFacts(
        oral_iron=OralIronFact(
            active=bool(starts),
            on_record=bool(on_record),
            days=ctx.days_ago(oral_start) if oral_start else None,
            draft=bool(oral_drafts),
        ),
        iv_iron=IvIronFact(
            recent=iv_days is not None and iv_days <= int(ctx.param("iv_relief_days", 183)),
            days_since=iv_days,
            draft=any(u.draft for u in therapy.iv),
        ),
        medications=MedicationsFact(
            dopamine_agonist=bool(therapy.dopamine),
            draft_dopamine_agonist=any(u.draft for u in therapy.dopamine),
            aggravating=bool(therapy.aggravating),
        ),
        oral_start=oral_start,
        iv_dates=iv_dates,
        evidence={
            "active_iron_request_ids": tuple(active_requests),
            "aggravating_medication_names": _names(therapy.aggravating),
            "dopamine_agonist_names": _names(therapy.dopamine),
            "oral_iron_start_date": oral_start.isoformat() if oral_start else None,
            "iv_iron_date": last_iv.isoformat() if last_iv else None,
        },
    )

