"""Fact values as the bands a rule compared them with: what an auditor needs, without patient values.

A fired rule's numeric leaf `ferritin.value_ug_per_l <= ferritin_low` is stored as the side of the
threshold the value fell on (`<= 50 (ferritin_low)` or `> 50 (ferritin_low)`), booleans as
themselves, text comparisons as `== text` / `!= text`, and a lab's effective date as its date.
With `CDS_DECISION_LOG_PHI=true` the raw values are stored instead.
"""

from __future__ import annotations

from typing import Any, Mapping

from cds_service.engine.conditions import leaf_holds
from cds_service.engine.ruleset import Rule

NEGATED = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}
DATE_FIELDS = ("date",)
DISPLAY_FIELDS = ("value_display",)


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def band(leaf: Mapping[str, Any], facts: Mapping[str, Mapping[str, Any]], params: Mapping[str, Any]) -> Any:
    """One leaf's fact value as an auditor may see it without PHI."""
    value = facts.get(leaf["fact"], {}).get(leaf["field"])
    if "is" in leaf:
        return value if isinstance(value, bool) else None
    if "equals" in leaf:
        if value is None:
            return "unknown"
        return f"== {leaf['equals']}" if value == leaf["equals"] else f"!= {leaf['equals']}"
    name = leaf["param"]
    threshold = params.get(name)
    if threshold is None:
        return f"not compared ({name} disabled)"
    if value is None or isinstance(value, bool):
        return "unknown"
    op = leaf["op"] if leaf_holds(leaf, facts, params) else NEGATED[leaf["op"]]
    return f"{op} {_number(threshold)} ({name})"


def rule_fact_values(
    rule: Rule,
    facts: Mapping[str, Mapping[str, Any]],
    params: Mapping[str, Any],
    *,
    phi: bool,
) -> dict[str, dict[str, Any]]:
    """Fact type -> field -> banded (or, in PHI mode, raw) value, for the fields this rule reads."""
    out: dict[str, dict[str, Any]] = {}
    for leaf in rule.leaves():
        fact, name = leaf["fact"], leaf["field"]
        record = facts.get(fact, {})
        values = out.setdefault(fact, {})
        if phi:
            values[name] = record.get(name)
        elif "op" in leaf:
            bands = values.setdefault(name, [])
            text = band(leaf, facts, params)
            if text not in bands:
                bands.append(text)
        else:
            values[name] = band(leaf, facts, params)
    for fact, values in out.items():
        record = facts.get(fact, {})
        for name in DATE_FIELDS:
            if record.get(name):
                values[name] = str(record[name])[:10]
        if phi:
            for name in DISPLAY_FIELDS:
                if record.get(name):
                    values[name] = record[name]
    return out
