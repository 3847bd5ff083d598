"""Entry point of the mapping layer: resources of one request -> FactSet (minimal foundation version)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

from fhir_mappings.facts import ConditionsFact, ContextFact, Exclusion, FactSet, FerritinFact, PatientFact
from fhir_mappings.valuesets import FERRITIN_LOINC

RLS_CODES = {("http://snomed.info/sct", "32914008"), ("http://hl7.org/fhir/sid/icd-10-cm", "G25.81")}
FERRITIN_UNITS = {"ng/mL": 1.0, "ug/L": 1.0, "mcg/L": 1.0}


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


def _subject_is(resource: dict[str, Any], patient_id: str) -> bool:
    ref = (resource.get("subject") or resource.get("patient") or {}).get("reference", "")
    return ref.split("/")[-1] == patient_id and ref.rsplit("/", 2)[-2:-1] in (["Patient"],)


def build_facts(data: MappingInput) -> FactSet:
    exclusions: list[Exclusion] = []
    patient = PatientFact()
    rls = False
    sources: dict[str, tuple[str, ...]] = {}
    ferritins: list[tuple[str, float, str, str]] = []
    for res in data.resources:
        rtype, rid = res.get("resourceType"), str(res.get("id", ""))
        if rtype == "Patient":
            if rid == data.patient_id:
                gender = res.get("gender")
                patient = PatientFact(sex=gender if gender in ("male", "female") else "unknown")
                sources["patient"] = (f"Patient/{rid}",)
            continue
        if not _subject_is(res, data.patient_id):
            exclusions.append(Exclusion(rtype or "?", rid, "subject is another patient"))
            continue
        if rtype == "Condition":
            codes = {(c.get("system"), c.get("code")) for c in (res.get("code") or {}).get("coding", [])}
            if codes & RLS_CODES:
                rls = True
                sources["conditions"] = sources.get("conditions", ()) + (f"Condition/{rid}",)
        elif rtype == "Observation":
            if res.get("status") not in ("final", "amended", "corrected"):
                exclusions.append(Exclusion(rtype, rid, f"status {res.get('status')}"))
                continue
            codes = {c.get("code") for c in (res.get("code") or {}).get("coding", []) if c.get("system") == "http://loinc.org"}
            if codes & set(FERRITIN_LOINC):
                q = res.get("valueQuantity") or {}
                unit = q.get("code") or q.get("unit")
                if unit not in FERRITIN_UNITS or not isinstance(q.get("value"), (int, float)):
                    exclusions.append(Exclusion(rtype, rid, f"unit {unit} not convertible to ug/L"))
                    continue
                ferritins.append((res.get("effectiveDateTime", ""), float(q["value"]), rid, f"{q['value']} {q.get('unit', unit)}"))
    ferritin = FerritinFact()
    if ferritins:
        date, value, rid, display = max(ferritins)
        ferritin = FerritinFact(current=True, value_ug_per_l=value, days_ago=0, date=date[:10], value_display=display)
        sources["ferritin"] = (f"Observation/{rid}",)
    return FactSet(
        patient=patient,
        conditions=ConditionsFact(rls=rls),
        ferritin=ferritin,
        context=ContextFact(hook=data.hook, order_hook=data.hook != "patient-view"),
        sources=sources,
        exclusions=tuple(exclusions),
    )
