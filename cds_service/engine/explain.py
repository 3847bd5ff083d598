"""Why a rule stayed silent, computed in one pass per request from conditions compiled once.

`conditions.first_unmet` is the reference: it re-walks a rule's tree and re-evaluates subtrees
at every level, which costs more than the rule engine itself when asked for every silent rule of
every request. Here each distinct leaf test of a profile is evaluated once per fact set, and each
distinct group (a shared condition is in many rules) likewise, and each node's reason text is
written at start-up; the walk only follows the failing path. The answers
are the reference's, character for character (tests/test_engine_explain.py checks both on every
rule case and on generated fact sets).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from cds_service.engine.conditions import Facts, Params, compile_leaf, describe_condition, describe_leaf

NodeValues = Sequence[bool]


@dataclass(frozen=True)
class _Node:
    kind: str
    """"leaf", "all", "any" or "none"."""
    slot: int
    """Where this node's truth value sits in the per-request values (`Explainer.node_values`)."""
    children: tuple["_Node", ...]
    text: str
    """`describe_condition` of the node (`describe_leaf` for a leaf): the words of the reference."""
    named: bool = False
    """A shared condition: reported by its name, as the reference does."""
    negated_text: str = ""
    """`not (text)`, written once."""
    all_failed_text: str = ""
    """What the reference says when a group fails as a whole: `not (a and b)` for `all`, `one of: a; b` otherwise."""

    def first_unmet(self, values: NodeValues, negated: bool = False) -> str | None:
        """`conditions.first_unmet`, reading each node's value instead of re-evaluating it."""
        kind = self.kind
        if kind == "leaf" or self.named:
            if values[self.slot] == negated:
                return self.negated_text if negated else self.text
            return None
        if values[self.slot] != negated:
            return None
        children = self.children
        if kind == "all":
            if not negated:
                for child in children:
                    reason = child.first_unmet(values, False)
                    if reason:
                        return reason
            return self.all_failed_text
        if kind == "any":
            if not negated:
                reasons = [child.first_unmet(values, False) for child in children]
                return "none of: " + "; ".join(r for r in reasons if r)
            for child in children:
                if values[child.slot]:
                    return child.negated_text
        if not negated:
            for child in children:
                if values[child.slot]:
                    return child.negated_text
        return self.all_failed_text


_LEAF, _ALL, _ANY, _NONE = range(4)
_KIND_CODES = {"all": _ALL, "any": _ANY, "none": _NONE}


class Explainer:
    """The conditions of one profile's rules, compiled once: `why(facts)` gives each rule's
    first unmet condition (None when it holds), evaluating every distinct leaf test and every
    distinct group (the shared conditions appear in many rules) only once per fact set."""

    def __init__(self, conditions: Sequence[Mapping[str, Any]], params: Params) -> None:
        self._params = params
        self._program: list[tuple[int, Any]] = []
        """One step per distinct node, children first: (_LEAF, test) or (group code, child slots getter)."""
        self._slots: dict[tuple, int] = {}
        self._leaf_count = 0
        self._roots = [self._compile(condition) for condition in conditions]

    def _slot(self, key: tuple, step: tuple[int, Any]) -> int:
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = len(self._program)
            self._program.append(step)
        return slot

    def _compile(self, condition: Mapping[str, Any]) -> _Node:
        for kind in ("all", "any", "none"):
            if kind in condition:
                children = tuple(self._compile(child) for child in condition[kind])
                slots = tuple(c.slot for c in children)
                slot = self._slot((kind, slots), (_KIND_CODES[kind], operator.itemgetter(*slots) if len(slots) > 1 else _one(slots[0])))
                text = describe_condition(condition)
                failed = ("not (" + " and ".join(c.text for c in children) + ")") if kind == "all" else "one of: " + "; ".join(c.text for c in children)
                return _Node(kind, slot, children, text, named="named" in condition, negated_text=f"not ({text})", all_failed_text=failed)
        key = ("leaf",) + tuple(sorted((k, repr(v)) for k, v in condition.items()))
        before = len(self._program)
        slot = self._slot(key, (_LEAF, compile_leaf(condition)))
        self._leaf_count += len(self._program) - before
        text = describe_leaf(condition)
        return _Node("leaf", slot, (), text, negated_text=f"not ({text})")

    @property
    def distinct_leaves(self) -> int:
        return self._leaf_count

    def node_values(self, facts: Facts) -> list[bool]:
        """The truth value of every distinct node, in slot order."""
        params = self._params
        values: list[bool] = []
        append = values.append
        for code, step in self._program:
            if code == _LEAF:
                append(step(facts, params))
            elif code == _ALL:
                append(all(step(values)))
            elif code == _ANY:
                append(any(step(values)))
            else:
                append(not any(step(values)))
        return values

    def holding(self, values: NodeValues) -> list[int]:
        """The indexes of the conditions (rules) that hold, read from `node_values`."""
        return [i for i, root in enumerate(self._roots) if values[root.slot]]

    def why(self, facts: Facts, which: Callable[[int], bool] = lambda i: True, values: NodeValues | None = None) -> list[str | None]:
        """For each rule (in the order given at construction) the reference's `first_unmet`;
        rules for which `which(index)` is false are skipped (None). `values` are the fact set's
        `node_values` when the caller has them already."""
        if values is None:
            values = self.node_values(facts)
        return [root.first_unmet(values) if which(i) else None for i, root in enumerate(self._roots)]


def _one(slot: int) -> Callable[[Sequence[bool]], tuple[bool]]:
    """A getter like `itemgetter(a, b)` for one slot: a 1-tuple, so all/any read it the same way."""
    return lambda values: (values[slot],)
