"""Entry point of the mapping layer: the resources of one request -> FactSet.

Each fact family has its own module; this one wires them in dependency order (patient and
pregnancy before the anemia threshold, therapy dates before the ferritin's day counts) and
freezes the trace (exclusions, notes and sources sorted, so the order of resources never shows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Mapping

from fhir_mappings import medications, observations
from fhir_mappings.allergies import map_allergies
from fhir_mappings.conditions import map_conditions
from fhir_mappings.context import Context, by_type, ref
from fhir_mappings.facts import ContextFact, Evidence, FactSet, FerritinFact, HemoglobinFact, RecordFact, TsatFact
from fhir_mappings.patient import anemia_threshold, map_patient
from fhir_mappings.prefetch_keys import facts_by_key


@dataclass(frozen=True)
class MappingInput:
    """What the mapping layer needs from one invocation."""

    resources: list[dict[str, Any]]
    patient_id: str
    now: datetime
    params: Mapping[str, Any]
    hook: str = "patient-view"
    draft_orders: list[dict[str, Any]] = field(default_factory=list)
    unknown_keys: frozenset[str] = frozenset()
    full_urls: Mapping[str, str] = field(default_factory=dict)
    """Bundle entry fullUrl -> "Type/id" (resolves `urn:uuid:` and absolute references)."""


def utc_today(now: datetime) -> date:
    """The calendar day (UTC) the facts are computed for: the only part of "now" they depend on."""
    return (now if now.tzinfo else now.replace(tzinfo=timezone.utc)).astimezone(timezone.utc).date()


def build_facts(data: MappingInput) -> FactSet:
    """Facts of the context patient only; everything left out is in `exclusions` with its reason."""
    ctx = Context(patient_id=data.patient_id, today=utc_today(data.now), params=data.params, full_urls=data.full_urls or {})
    resources = by_type(data.resources)
    drafts = by_type(data.draft_orders)

    patient = map_patient(resources, ctx)
    conditions = map_conditions(resources, ctx)
    allergies, allergy_names = map_allergies(resources, ctx)
    therapy = medications.therapy_facts(medications.collect(resources, drafts, ctx), ctx)

    labs = observations.candidates(resources, ctx)
    ferritin_result = observations.latest(labs.results["ferritin"])
    ferritin = _ferritin(ferritin_result, therapy, ctx)
    hb_result = observations.latest(labs.results["hemoglobin"])
    threshold = anemia_threshold(patient, conditions.pregnancy, ctx)
    hemoglobin = HemoglobinFact(threshold_g_dl=threshold)
    if hb_result is not None:
        ctx.trace.source("hemoglobin", ref(hb_result.resource))
        hemoglobin = HemoglobinFact(
            current=True,
            value_g_dl=hb_result.value,
            days_ago=ctx.days_ago(hb_result.day),
            threshold_g_dl=threshold,
            anemic=threshold is not None and hb_result.value < threshold,
            date=hb_result.day.isoformat(),
            value_display=hb_result.display,
        )
    tsat = TsatFact()
    tsat_result = observations.latest_tsat(labs.results, ctx)
    if tsat_result is not None:
        for reference in tsat_result.refs:
            ctx.trace.source("tsat", reference)
        tsat = TsatFact(
            current=True,
            value_pct=tsat_result.value,
            days_ago=ctx.days_ago(tsat_result.day),
            derived=tsat_result.derived,
            date=tsat_result.day.isoformat(),
            value_display=tsat_result.display,
        )

    observations.settle_unreadable(
        labs,
        {
            "ferritin": ferritin_result.day if ferritin_result else None,
            "hemoglobin": hb_result.day if hb_result else None,
            "tsat": tsat_result.day if tsat_result else None,
        },
        ctx,
    )

    trace = ctx.trace
    unreadable = tuple(sorted(set(trace.unreadable), key=lambda u: (u.resource_type, u.resource_id, u.element)))
    unknown = {t for key in data.unknown_keys for t in facts_by_key().get(key, ())} | {f for u in unreadable for f in u.unknown}
    return FactSet(
        patient=patient,
        conditions=conditions,
        allergies=allergies,
        ferritin=ferritin,
        hemoglobin=hemoglobin,
        tsat=tsat,
        oral_iron=therapy.oral_iron,
        iv_iron=therapy.iv_iron,
        medications=therapy.medications,
        context=ContextFact(hook=data.hook, order_hook=data.hook != "patient-view"),
        record=RecordFact(
            unreadable=bool(unreadable),
            pregnancy_unknown=any("conditions.pregnancy" in u.unknown for u in unreadable),
        ),
        sources={fact: tuple(sorted(refs)) for fact, refs in sorted(trace.sources.items())},
        evidence=Evidence(
            oral_iron_intolerance_names=tuple(allergy_names["oral_iron"]),
            iv_iron_allergy_names=tuple(allergy_names["iv_iron"]),
            **therapy.evidence,
        ),
        exclusions=tuple(sorted(set(trace.exclusions), key=lambda e: (e.resource_type, e.resource_id, e.reason, e.fact))),
        notes=tuple(sorted(trace.notes)),
        unknown=tuple(sorted(unknown)),
        unreadable=unreadable,
    )


def _ferritin(result: observations.LabResult | None, therapy: medications.TherapyFacts, ctx: Context) -> FerritinFact:
    if result is None:
        return FerritinFact()
    ctx.trace.source("ferritin", ref(result.resource))
    # Reason (f) judges a repeat course from a ferritin taken after the *latest* infusion: a result
    # drawn before it says nothing about the course now working (None then).
    latest_iv = max(therapy.iv_dates) if therapy.iv_dates else None
    return FerritinFact(
        current=True,
        value_ug_per_l=result.value,
        days_ago=ctx.days_ago(result.day),
        days_since_oral_start=(result.day - therapy.oral_start).days if therapy.oral_start else None,
        days_since_iv_iron=(result.day - latest_iv).days if latest_iv and latest_iv <= result.day else None,
        date=result.day.isoformat(),
        value_display=result.display,
    )
