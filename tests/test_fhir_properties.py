"""Property-based tests: arbitrary and mutated FHIR JSON never break the mapping, and nothing
malformed becomes a fact (an independent oracle re-checks every resource a fact was built from,
with fhir.resources' own R4B datatypes for the elements the fact is built from)."""

from __future__ import annotations

import copy
import math
from typing import Any

from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.period import Period
from fhir.resources.R4B.quantity import Quantity
from fhir.resources.R4B.reference import Reference
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service.tooling import fixtures as fx
from fhir_mappings import build_facts
from fhir_mappings.errors import MappingInputError

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["final", "active", "Patient/pat-1", "Patient/other", "urn:uuid:x", "2026-11-20", "2026-11-20T08:00:00Z", "ng/mL", "g/L", "%", "http://unitsofmeasure.org", "http://loinc.org", "2276-4", "718-7", "310325", "#m"]),
)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)

TYPES = ["Patient", "Observation", "Condition", "MedicationRequest", "MedicationStatement", "MedicationAdministration", "AllergyIntolerance", "Medication", "Bundle", "Other"]
KEYS = ["id", "status", "code", "subject", "patient", "valueQuantity", "effectiveDateTime", "effectivePeriod", "issued", "clinicalStatus", "verificationStatus", "medicationCodeableConcept", "medicationReference", "contained", "authoredOn", "priorPrescription", "dispenseRequest", "gender", "birthDate", "intent", "doNotPerform"]
arbitrary_resource = st.builds(
    lambda rtype, body: {"resourceType": rtype, **body},
    st.sampled_from(TYPES),
    st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6),
)


def realistic_chart() -> list[dict[str, Any]]:
    return [
        fx.patient(),
        fx.condition("rls", cid="c1"),
        fx.condition("ida-icd", cid="c2"),
        fx.ferritin(32, days_ago=20, oid="o1"),
        fx.hemoglobin(11.2, oid="o2"),
        fx.tsat(15, oid="o3"),
        fx.serum_iron(60, days_ago=3, oid="o4"),
        fx.tibc(400, days_ago=3, oid="o5"),
        fx.medication_request("ferrous-sulfate", days_ago=40, mid="m1"),
        fx.medication_statement("sertraline", sid="m2"),
        fx.medication_administration("iron-sucrose", aid="m3"),
        fx.allergy("ferric-carboxymaltose", aid="a1"),
    ]


def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths(child, prefix + (index,))
    return found


def mutate(resource: dict[str, Any], path: tuple, op: str, new: Any) -> None:
    parent: Any = resource
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if op == "delete":
        del parent[last]
    else:
        parent[last] = new


@st.composite
def mutated_chart(draw):
    chart = realistic_chart()
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        resource = draw(st.sampled_from(chart))
        candidates = [p for p in paths(resource) if p != ("resourceType",)]
        path = draw(st.sampled_from(candidates))
        mutate(resource, path, draw(st.sampled_from(["delete", "replace"])), draw(json_values))
    return chart


def build(resources, drafts=None):
    try:
        return build_facts(fx.mapping_input(resources, drafts=drafts, hook="order-sign" if drafts else "patient-view"))
    except MappingInputError:
        return None


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(arbitrary_resource, max_size=6), st.lists(arbitrary_resource, max_size=2))
def test_arbitrary_json_never_escapes_as_an_exception(resources, drafts):
    fs = build(resources, drafts)
    if fs is not None:
        check_facts_trustworthy(fs, resources + drafts)


@SETTINGS
@given(mutated_chart())
def test_mutated_fhir_never_becomes_a_malformed_fact(chart):
    fs = build(copy.deepcopy(chart))
    assert fs is not None  # mutations never add a second Patient
    check_facts_trustworthy(fs, chart)


# --- the oracle: written independently of the mappers, from the spec's "usable only when" -----

OK_UNITS = {"ferritin": {"ng/mL", "ng/ml", "ug/L", "ug/l", "mcg/L", "pmol/L", "pmol/l"}, "hemoglobin": {"g/dL", "g/dl", "g/L", "g/l", "mmol/L", "mmol/l"}, "tsat": {"%"}}


def by_ref(resources):
    return {f"{r.get('resourceType')}/{r.get('id')}": r for r in resources if isinstance(r, dict)}


def _valid(model, value) -> bool:
    try:
        model.model_validate(value)
    except Exception:  # noqa: BLE001 - any refusal means "not valid R4"
        return False
    return True


def _codings_ok(concept) -> bool:
    """Each coding's system and code valid as R4B says (display and the rest are not read)."""
    if concept is None:
        return True
    if not isinstance(concept, dict) or not isinstance(concept.get("coding", []), list):
        return False
    return all(isinstance(c, dict) and _valid(Coding, {k: c[k] for k in ("system", "code") if k in c}) for c in concept.get("coding", []))


def _date_ok(value) -> bool:
    return value is None or _valid(Period, {"start": value})


def read_elements_ok(resource) -> bool:
    """The oracle for 'readable': the elements a fact is built from, checked with R4B datatypes."""
    concepts = [resource.get(k) for k in ("code", "clinicalStatus", "verificationStatus", "medicationCodeableConcept")]
    references = [resource.get(k) for k in ("subject", "patient", "medicationReference", "priorPrescription") if k in resource]
    dated = [resource.get(k) for k in ("effectiveDateTime", "issued", "onsetDateTime", "abatementDateTime", "authoredOn")]
    quantity = resource.get("valueQuantity")
    return (
        all(_codings_ok(c) for c in concepts)
        and all(_valid(Reference, {"reference": r.get("reference")} if isinstance(r, dict) else r) for r in references)
        and all(_date_ok(d) for d in dated)
        and (quantity is None or _valid(Quantity, {k: quantity[k] for k in ("value", "comparator", "unit", "system", "code") if k in quantity}))
        and isinstance(resource.get("status", ""), str)
    )


def subject_ok(resource, field="subject"):
    ref = resource.get(field)
    return isinstance(ref, dict) and ref.get("reference") in ("Patient/pat-1",) or (
        isinstance(ref, dict) and isinstance(ref.get("reference"), str) and ref["reference"].endswith("/Patient/pat-1")
    )


def lab_ok(obs, analyte):
    q = obs.get("valueQuantity")
    assert obs.get("status") in ("final", "amended", "corrected")
    assert subject_ok(obs)
    assert isinstance(q, dict) and isinstance(q.get("value"), (int, float)) and not isinstance(q.get("value"), bool)
    assert math.isfinite(q["value"]) and q["value"] >= 0 and q.get("comparator") is None
    unit = q.get("code") if q.get("system") == "http://unitsofmeasure.org" and q.get("code") else q.get("unit")
    assert unit in OK_UNITS[analyte] or unit in {"µg/L", "μg/L", "mcg/l", "µg/l", "μg/l"}
    assert read_elements_ok(obs)


def check_facts_trustworthy(fs, resources):
    index = by_ref(resources)
    for fact, analyte in (("ferritin", "ferritin"), ("hemoglobin", "hemoglobin")):
        record = getattr(fs, fact)
        if record.current:
            (source,) = fs.sources[fact]
            lab_ok(index[source], analyte)
            assert isinstance(getattr(record, "value_ug_per_l" if fact == "ferritin" else "value_g_dl"), float)
            assert 0 <= record.days_ago
    if fs.tsat.current and not fs.tsat.derived:
        (source,) = fs.sources["tsat"]
        lab_ok(index[source], "tsat")
        assert 0 <= fs.tsat.value_pct <= 100
    if any(vars(fs.conditions).values()):
        for source in fs.sources["conditions"]:
            cond = index[source]
            assert subject_ok(cond)
            codes = {c.get("code") for c in cond["clinicalStatus"]["coding"]}
            assert codes & {"active", "recurrence", "relapse"}
            assert read_elements_ok(cond)
    if fs.oral_iron.on_record:
        assert any(index[s].get("status") == "active" and read_elements_ok(index[s]) for s in fs.sources["oral_iron"] if s in index)
    if fs.allergies.oral_iron_intolerance or fs.allergies.iv_iron_allergy:
        for source in fs.sources["allergies"]:
            allergy = index[source]
            assert subject_ok(allergy, "patient") and read_elements_ok(allergy)
    for exclusion in fs.exclusions:
        assert isinstance(exclusion.reason, str) and len(exclusion.reason) < 120
        assert not exclusion.reason.startswith("unreadable ("), exclusion  # junk is handled, not caught
    for item in fs.unreadable:
        assert item.element and len(item.element) <= 120 and item.unknown, item
