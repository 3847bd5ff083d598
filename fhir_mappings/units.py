"""Quantities to canonical units: the UCUM code governs; free-text unit only via a closed alias list.

The LOINC code names the analyte, the unit decides the conversion: a ferritin in pmol/L under a
mass-concentration code is converted like one under 14723-1. A unit that is missing, unknown or of
the wrong dimension makes the result unusable (never guessed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

UCUM = "http://unitsofmeasure.org"

# analyte -> UCUM code -> factor to the canonical unit
FACTORS: dict[str, dict[str, float]] = {
    "ferritin": {
        "ng/mL": 1.0, "ng/ml": 1.0, "ug/L": 1.0, "ug/l": 1.0, "mcg/L": 1.0,
        "pmol/L": 1 / 2.247, "pmol/l": 1 / 2.247, "nmol/L": 1000 / 2.247, "nmol/l": 1000 / 2.247,
        "mg/L": 1000.0, "mg/l": 1000.0, "ug/dL": 10.0, "ug/dl": 10.0, "ng/dL": 0.01, "ng/dl": 0.01,
    },
    "hemoglobin": {"g/dL": 1.0, "g/dl": 1.0, "g/L": 0.1, "g/l": 0.1, "mmol/L": 1.611, "mmol/l": 1.611},
    "tsat": {"%": 1.0, "1": 100.0},  # UCUM "1": a fraction (0.5 = 50 %); a value above 1 is implausible
    "serum_iron": {"ug/dL": 1.0, "ug/dl": 1.0, "umol/L": 5.585, "umol/l": 5.585},
    "tibc": {"ug/dL": 1.0, "ug/dl": 1.0, "umol/L": 5.585, "umol/l": 5.585},
}
CANONICAL = {"ferritin": "ug/L", "hemoglobin": "g/dL", "tsat": "%", "serum_iron": "ug/dL", "tibc": "ug/dL"}

# Free-text units accepted when the quantity has no UCUM code (a closed list: nothing else is read).
ALIASES: dict[str, str] = {
    "ng/mL": "ng/mL", "ng/ml": "ng/mL", "ug/L": "ug/L", "ug/l": "ug/L", "µg/L": "ug/L", "μg/L": "ug/L",
    "µg/l": "ug/L", "μg/l": "ug/L", "mcg/L": "ug/L", "mcg/l": "ug/L", "pmol/L": "pmol/L", "pmol/l": "pmol/L",
    "g/dL": "g/dL", "g/dl": "g/dL", "g/L": "g/L", "g/l": "g/L", "mmol/L": "mmol/L", "mmol/l": "mmol/L",
    "%": "%", "percent": "%",
    "ug/dL": "ug/dL", "ug/dl": "ug/dL", "µg/dL": "ug/dL", "μg/dL": "ug/dL", "mcg/dL": "ug/dL", "mcg/dl": "ug/dL",
    "umol/L": "umol/L", "umol/l": "umol/L", "µmol/L": "umol/L", "μmol/L": "umol/L", "µmol/l": "umol/L", "μmol/l": "umol/L",
}
# Canonical values outside these bounds cannot be real: the unit is most likely wrong (a g/L result
# labelled g/dL), so the result is unusable rather than trusted.
PLAUSIBLE: dict[str, tuple[float, float]] = {
    "ferritin": (0.0, 100000.0),
    "hemoglobin": (1.0, 30.0),
    "tsat": (0.0, 100.0),
    "serum_iron": (0.0, 2000.0),
    "tibc": (0.0, 2000.0),
}
# Values converted with a factor are rounded so that boundaries stay exact (120 g/L = 12.0 g/dL).
ROUND_DIGITS = 2


COMPARATORS = ("<", "<=", ">=", ">")


@dataclass(frozen=True)
class Converted:
    value: float
    unit: str
    """The unit the value was reported in (UCUM code or accepted alias), for card text."""
    comparator: str | None = None
    """A censored result (">1000"): the true value lies beyond `value` on this side."""


def safe_unit_text(unit: Any) -> str:
    """A unit for an exclusion reason: short and printable (a unit is not a patient value)."""
    if not isinstance(unit, str) or not unit.strip():
        return "missing"
    text = "".join(ch for ch in unit.strip() if ch.isprintable())[:16]
    return text or "missing"


def to_canonical(quantity: Any, analyte: str) -> Converted | str:
    """The value in the analyte's canonical unit, or the reason (no values in it) it is unusable."""
    if not isinstance(quantity, dict):
        return "no valueQuantity"
    value = quantity.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "no numeric value"
    comparator = quantity.get("comparator")
    if comparator is not None and comparator not in COMPARATORS:
        return "value has an unknown comparator"
    if value < 0:
        return "negative value"
    canonical = CANONICAL[analyte]
    system, code, unit = quantity.get("system"), quantity.get("code"), quantity.get("unit")
    if system == UCUM and isinstance(code, str) and code:
        reported = code
    elif system not in (None, UCUM):
        return f"unit system {safe_unit_text(system)} is not UCUM"
    else:
        candidates = {ALIASES.get(t) for t in (unit, code) if isinstance(t, str) and t}
        if not candidates:
            return f"unit missing, not convertible to {canonical}"
        if None in candidates or len(candidates) > 1:
            return f"unit {safe_unit_text(unit if unit else code)} not convertible to {canonical}"
        reported = candidates.pop()  # type: ignore[assignment]
    factor = FACTORS[analyte].get(reported)
    if factor is None:
        return f"unit {safe_unit_text(reported)} not convertible to {canonical}"
    converted = float(value) if factor == 1.0 else round(float(value) * factor, ROUND_DIGITS)
    low, high = PLAUSIBLE[analyte]
    if not low <= converted <= high:
        return f"value implausible in {safe_unit_text(reported)}"
    return Converted(converted, reported, comparator)


def censored_is_decisive(value: float, comparator: str, thresholds: list[float]) -> bool:
    """A censored value can stand for the true one only when every threshold falls on the same side.

    ">1000" ng/mL is above every ferritin threshold whatever the true value; ">40" could be 41 or
    400, so it decides nothing and the result stays unusable. Rules compare with `<=`, `>`, `<`
    and `>=`, so equality matters: "<=50" is decisive for a threshold of 50, "<51" is not.
    """
    if not thresholds:
        return False
    if comparator == ">":
        return value >= max(thresholds)
    if comparator == ">=":
        return value > max(thresholds)
    if comparator == "<":
        return value <= min(thresholds)
    return value < min(thresholds)  # "<="
