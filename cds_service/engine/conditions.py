"""Meaning of a rule condition, in plain Python: the reference both evaluators must agree with.

Semantics (also in rules/README.md):
- `all`: every child holds; `any`: at least one holds; `none`: no child holds.
- `{fact, field, is: bool}` holds when the field is exactly that boolean.
- `{fact, field, op, param}` holds when both the field and the parameter are numbers and the
  comparison is true. A missing value (None) or a disabled parameter (null) makes it false, so
  `none` of it is true: "the criterion does not hold".
- `{fact, field, equals: text}` holds when the field is exactly that text.
- A shared condition (`{condition: name}` in a rule file) arrives here as a one-child `all` group
  with its name under `named` (cds_service.engine.ruleset.expand_shared).
"""

from __future__ import annotations

import operator
from types import MappingProxyType
from typing import Any, Callable, Mapping

Facts = Mapping[str, Mapping[str, Any]]
Params = Mapping[str, Any]
Test = Callable[[Facts, Params], bool]
"""A compiled condition: `test(facts, params)` is `holds(condition, facts, params)`."""

_NO_FIELDS: Mapping[str, Any] = MappingProxyType({})

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def leaf_holds(leaf: Mapping[str, Any], facts: Facts, params: Params) -> bool:
    value = facts.get(leaf["fact"], {}).get(leaf["field"])
    if "is" in leaf:
        return isinstance(value, bool) and value is leaf["is"]
    if "equals" in leaf:
        return isinstance(value, str) and value == leaf["equals"]
    threshold = params.get(leaf["param"])
    if not (_is_number(value) and _is_number(threshold)):
        return False
    return OPERATORS[leaf["op"]](value, threshold)


def compile_leaf(leaf: Mapping[str, Any]) -> Test:
    """`leaf_holds` for one leaf, as a closure: the leaf's keys are read once, not per request."""
    fact, field = leaf["fact"], leaf["field"]
    if "is" in leaf:
        wanted = leaf["is"]
        if not isinstance(wanted, bool):
            return lambda facts, params: False

        def is_test(facts: Facts, params: Params) -> bool:
            return facts.get(fact, _NO_FIELDS).get(field) is wanted

        return is_test
    if "equals" in leaf:
        text = leaf["equals"]

        def equals_test(facts: Facts, params: Params) -> bool:
            value = facts.get(fact, _NO_FIELDS).get(field)
            return isinstance(value, str) and value == text

        return equals_test
    compare, name = OPERATORS[leaf["op"]], leaf["param"]

    def compare_test(facts: Facts, params: Params) -> bool:
        value = facts.get(fact, _NO_FIELDS).get(field)
        threshold = params.get(name)
        if not (_is_number(value) and _is_number(threshold)):
            return False
        return compare(value, threshold)

    return compare_test


def compile_condition(condition: Mapping[str, Any]) -> Test:
    """`holds` for one condition tree, compiled once (at start-up) into nested closures.

    Same meaning as `holds`, which stays the reference; tests/test_engine_explain.py checks the
    two agree on every card condition over generated fact sets (the rules themselves run as one
    program of distinct nodes: explain.Explainer).
    """
    for key in ("all", "any", "none"):
        if key in condition:
            children = tuple(compile_condition(child) for child in condition[key])
            return _GROUPS[key](children)
    return compile_leaf(condition)


def _all(children: tuple[Test, ...]) -> Test:
    def test(facts: Facts, params: Params) -> bool:
        for child in children:
            if not child(facts, params):
                return False
        return True

    return test


def _any(children: tuple[Test, ...]) -> Test:
    def test(facts: Facts, params: Params) -> bool:
        for child in children:
            if child(facts, params):
                return True
        return False

    return test


def _none(children: tuple[Test, ...]) -> Test:
    def test(facts: Facts, params: Params) -> bool:
        for child in children:
            if child(facts, params):
                return False
        return True

    return test


_GROUPS: dict[str, Callable[[tuple[Test, ...]], Test]] = {"all": _all, "any": _any, "none": _none}


def holds(condition: Mapping[str, Any], facts: Facts, params: Params) -> bool:
    if "all" in condition:
        return all(holds(c, facts, params) for c in condition["all"])
    if "any" in condition:
        return any(holds(c, facts, params) for c in condition["any"])
    if "none" in condition:
        return not any(holds(c, facts, params) for c in condition["none"])
    return leaf_holds(condition, facts, params)


def holds_when_unknown(condition: Mapping[str, Any], facts: Facts, params: Params, unknown: Callable[[str, str], bool]) -> bool | None:
    """Three-valued (Kleene) meaning of a condition when some facts are unknown.

    True: it holds whatever the unknown data is; False: it fails whatever the unknown data is;
    None: the answer depends on data that could not be read. A leaf is None when
    `unknown(fact, field)`, otherwise it has its ordinary meaning.
    """
    if "all" in condition or "any" in condition or "none" in condition:
        key = "all" if "all" in condition else "any" if "any" in condition else "none"
        results = [holds_when_unknown(c, facts, params, unknown) for c in condition[key]]
        if key == "all":
            return False if False in results else (True if all(r is True for r in results) else None)
        some = True if True in results else (False if all(r is False for r in results) else None)
        return some if key == "any" else (None if some is None else not some)
    if unknown(condition["fact"], condition["field"]):
        return None
    return leaf_holds(condition, facts, params)


def describe_leaf(leaf: Mapping[str, Any]) -> str:
    """A leaf in plain words, without values: safe for logs and the catalog."""
    name = f"{leaf['fact']}.{leaf['field']}"
    if "is" in leaf:
        return f"{name} is {'true' if leaf['is'] else 'false'}"
    if "equals" in leaf:
        return f"{name} is {leaf['equals']}"
    return f"{name} {leaf['op']} {leaf['param']}"


def first_unmet(condition: Mapping[str, Any], facts: Facts, params: Params, negated: bool = False) -> str | None:
    """The first condition (in file order) that stops the rule, in words; None when the rule holds.

    Under `none` a child that *holds* is what stops the rule, so it is reported as "not (...)".
    A shared condition (a group with `named`) is reported by its name.
    """
    if "named" in condition:
        if holds(condition, facts, params) != negated:
            return None
        return f"not ({condition['named']})" if negated else condition["named"]
    if "all" in condition or "any" in condition or "none" in condition:
        result = holds(condition, facts, params)
        if result != negated:
            return None
        if "all" in condition:
            children = condition["all"]
            if not negated:
                for child in children:
                    reason = first_unmet(child, facts, params, False)
                    if reason:
                        return reason
            return "not (" + " and ".join(describe_condition(c) for c in children) + ")"
        if "any" in condition:
            children = condition["any"]
            if not negated:
                reasons = [first_unmet(child, facts, params, False) for child in children]
                return "none of: " + "; ".join(r for r in reasons if r)
            for child in children:
                if holds(child, facts, params):
                    return "not (" + describe_condition(child) + ")"
        children = condition["none"]
        if not negated:
            for child in children:
                if holds(child, facts, params):
                    return "not (" + describe_condition(child) + ")"
        return "one of: " + "; ".join(describe_condition(c) for c in children)
    if leaf_holds(condition, facts, params) == negated:
        return ("not (" + describe_leaf(condition) + ")") if negated else describe_leaf(condition)
    return None


def describe_condition(condition: Mapping[str, Any]) -> str:
    if "named" in condition:
        return condition["named"]
    for key, word in (("all", " and "), ("any", " or ")):
        if key in condition:
            return "(" + word.join(describe_condition(c) for c in condition[key]) + ")"
    if "none" in condition:
        return "not (" + " or ".join(describe_condition(c) for c in condition["none"]) + ")"
    return describe_leaf(condition)
