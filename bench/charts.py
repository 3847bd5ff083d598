"""Benchmark requests: one per outcome (built from the fixtures) and a large chart."""

from __future__ import annotations

import random
from typing import Any

from cds_service.tooling import fixtures as fx


def typical_request(patient_id: str = fx.DEFAULT_PATIENT, ferritin: float = 32) -> dict[str, Any]:
    """About 10 KB: an RLS patient with a low ferritin, a hemoglobin, a TSAT and a few other items."""
    p = {"patient_id": patient_id}
    return fx.cds_request(
        [
            fx.patient(patient_id),
            fx.condition("rls", **p),
            fx.condition("crohns", clinical="resolved", **p),
            fx.ferritin(ferritin, days_ago=20, **p),
            fx.ferritin(41, days_ago=200, **p),
            fx.hemoglobin(12.8, days_ago=20, **p),
            fx.hemoglobin(12.5, days_ago=200, **p),
            fx.tsat(18, days_ago=20, **p),
            fx.medication_request("sertraline", days_ago=300, **p),
            fx.medication_statement("bupropion", days_ago=100, **p),
            fx.allergy("ferrous-sulfate", clinical="resolved", **p),
        ],
        patient_id=patient_id,
    )


def outcome_requests() -> dict[str, dict[str, Any]]:
    """A request per common outcome, for the per-case figures."""
    return {
        "typical (start-oral-iron)": typical_request(),
        "order-iron-studies": fx.cds_request([fx.condition("rls")]),
        "iron-stores-adequate": fx.cds_request([fx.condition("rls"), fx.ferritin(120, days_ago=30)]),
        "escalate-iv-iron": fx.cds_request(
            [fx.condition("rls"), fx.ferritin(30, days_ago=5), fx.medication_request("ferrous-sulfate", days_ago=60)]
        ),
        "iron-overload-risk": fx.cds_request(
            [fx.condition("rls"), fx.ferritin(420, days_ago=5), fx.medication_request("ferrous-sulfate", days_ago=60)]
        ),
        "no card (no RLS)": fx.cds_request([fx.ferritin(80, days_ago=5)]),
    }


def new_chart_request(rng: random.Random, patient_id: str) -> dict[str, Any]:
    """The headline chart: the Patient, an RLS condition, three ferritins, two hemoglobins, a TSAT
    and two medication orders, with this patient's ids and values drawn from `rng`."""
    p = {"patient_id": patient_id}
    days = sorted(rng.sample(range(5, 700), 3))
    resources = [
        fx.patient(patient_id, gender=rng.choice(["female", "male"]), birth_date=f"{rng.randint(1940, 2004)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"),
        fx.condition("rls", onset_days_ago=rng.randint(100, 3000), **p),
        *(fx.ferritin(rng.randint(12, 320), days_ago=d, **p) for d in days),
        *(fx.hemoglobin(round(rng.uniform(9.0, 16.0), 1), days_ago=d, **p) for d in days[:2]),
        fx.tsat(rng.randint(6, 48), days_ago=days[0], **p),
        fx.medication_request(rng.choice(["ferrous-sulfate", "sertraline", "ropinirole"]), days_ago=rng.randint(1, 400), **p),
        fx.medication_request(rng.choice(["bupropion", "sertraline", "ferrous-sulfate"]), days_ago=rng.randint(1, 400), status=rng.choice(["active", "completed"]), **p),
    ]
    return fx.cds_request(resources, patient_id=patient_id)


def new_chart_requests(count: int = 3000, seed: int = 2026) -> list[dict[str, Any]]:
    """`count` headline charts, each a different patient with its own resource ids and values;
    the same list for the same seed, so every run sends the same rotation."""
    rng = random.Random(seed)
    return [new_chart_request(rng, f"new-{seed}-{n}") for n in range(count)]


def large_new_chart_requests(count: int = 60, seed: int = 7) -> list[dict[str, Any]]:
    """Large charts (300 Observations, 50 Conditions, 40 medications), each a different patient."""
    return [large_chart_request(seed + n, patient_id=f"large-{seed}-{n}") for n in range(count)]


def large_chart_request(seed: int = 7, patient_id: str = fx.DEFAULT_PATIENT) -> dict[str, Any]:
    """300 Observations, 50 Conditions, 40 medications: a long-standing patient's chart."""
    rng = random.Random(seed)
    p = {"patient_id": patient_id}
    resources: list[dict[str, Any]] = [fx.patient(patient_id)]
    labs = [
        lambda d: fx.ferritin(rng.randint(15, 400), days_ago=d, **p),
        lambda d: fx.hemoglobin(round(rng.uniform(9.5, 15.5), 1), days_ago=d, **p),
        lambda d: fx.tsat(rng.randint(8, 50), days_ago=d, **p),
        lambda d: fx.serum_iron(rng.randint(30, 180), days_ago=d, **p),
        lambda d: fx.tibc(rng.randint(240, 450), days_ago=d, **p),
    ]
    for i in range(300):
        resources.append(labs[i % len(labs)](rng.randint(1, 1500)))
    kinds = ["rls", "ida", "celiac", "crohns", "rls-icd", "ida-icd"]
    for i in range(50):
        resources.append(fx.condition(kinds[i % len(kinds)], clinical=rng.choice(["active", "resolved", "inactive"]), **p))
    meds = ["ferrous-sulfate", "sertraline", "ropinirole", "bupropion", "pramipexole"]
    for i in range(40):
        kind = meds[i % len(meds)]
        if i % 2:
            resources.append(fx.medication_request(kind, days_ago=rng.randint(1, 900), status=rng.choice(["active", "completed", "stopped"]), **p))
        else:
            resources.append(fx.medication_statement(kind, days_ago=rng.randint(1, 900), status=rng.choice(["active", "completed"]), **p))
    return fx.cds_request(resources, patient_id=patient_id)
