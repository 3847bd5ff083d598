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


def distinct_typical_requests(count: int = 3000) -> list[dict[str, Any]]:
    """Typical requests that all differ (patient, resource ids, ferritin): every one is a new chart.

    Sent in rotation, so that no answer could come from anything kept about an earlier request.
    """
    return [typical_request(f"bench-{n}", ferritin=20 + n % 25) for n in range(count)]


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


def large_chart_request(seed: int = 7) -> dict[str, Any]:
    """300 Observations, 50 Conditions, 40 medications: a long-standing patient's chart."""
    rng = random.Random(seed)
    resources: list[dict[str, Any]] = [fx.patient()]
    labs = [
        lambda d: fx.ferritin(rng.randint(15, 400), days_ago=d),
        lambda d: fx.hemoglobin(round(rng.uniform(9.5, 15.5), 1), days_ago=d),
        lambda d: fx.tsat(rng.randint(8, 50), days_ago=d),
        lambda d: fx.serum_iron(rng.randint(30, 180), days_ago=d),
        lambda d: fx.tibc(rng.randint(240, 450), days_ago=d),
    ]
    for i in range(300):
        resources.append(labs[i % len(labs)](rng.randint(1, 1500)))
    kinds = ["rls", "ida", "celiac", "crohns", "rls-icd", "ida-icd"]
    for i in range(50):
        resources.append(fx.condition(kinds[i % len(kinds)], clinical=rng.choice(["active", "resolved", "inactive"])))
    meds = ["ferrous-sulfate", "sertraline", "ropinirole", "bupropion", "pramipexole"]
    for i in range(40):
        kind = meds[i % len(meds)]
        if i % 2:
            resources.append(fx.medication_request(kind, days_ago=rng.randint(1, 900), status=rng.choice(["active", "completed", "stopped"])))
        else:
            resources.append(fx.medication_statement(kind, days_ago=rng.randint(1, 900), status=rng.choice(["active", "completed"])))
    return fx.cds_request(resources)
