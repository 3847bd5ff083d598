"""Why a rule stayed silent, computed in one pass per request from conditions compiled once.

`conditions.first_unmet` is the reference: it re-walks a rule's tree and re-evaluates subtrees
at every level, which costs more than the rule engine itself when asked for every silent rule of
every request. Here each distinct leaf test of a profile is evaluated once per fact set, and each
node's reason text is written at start-up; the walk only follows the failing path. The answers
are the reference's, character for character (tests/test_engine_explain.py checks both on every
rule case and on generated fact sets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from cds_service.engine.conditions import Facts, Params, describe_condition, describe_leaf, leaf_holds

LeafResults = Sequence[bool]


@dataclass(frozen=True)
class _Node:
    kind: str
    """"leaf", "all", "any" or "none"."""
    leaf: int
    """Index of the leaf's result (leaves only)."""
    children: tuple["_Node", ...]
    text: str
    """`describe_condition` of the node (`describe_leaf` for a leaf): the words of the reference."""
    named: bool = False
    """A shared condition: reported by its name, as the reference does."""

    def holds(self, results: LeafResults) -> bool:
        kind = self.kind
        if kind == "leaf":
            return results[self.leaf]
        if kind == "all":
            for child in self.children:
                if not child.holds(results):
                    return False
            return True
        for child in self.children:
            if child.holds(results):
                return kind == "any"
        return kind == "none"

    def first_unmet(self, results: LeafResults, negated: bool = False) -> str | None:
        """`conditions.first_unmet`, reading leaf results instead of the facts."""
        kind = self.kind
        if kind == "leaf" or self.named:
            if self.holds(results) == negated:
                return f"not ({self.text})" if negated else self.text
            return None
        if self.holds(results) != negated:
            return None
        children = self.children
        if kind == "all":
            if not negated:
                for child in children:
                    reason = child.first_unmet(results, False)
                    if reason:
                        return reason
            return "not (" + " and ".join(c.text for c in children) + ")"
        if kind == "any":
            if not negated:
                reasons = [child.first_unmet(results, False) for child in children]
                return "none of: " + "; ".join(r for r in reasons if r)
            for child in children:
                if child.holds(results):
                    return "not (" + child.text + ")"
        if not negated:
            for child in children:
                if child.holds(results):
                    return "not (" + child.text + ")"
        return "one of: " + "; ".join(c.text for c in children)


class Explainer:
    """The conditions of one profile's rules, compiled once: `why(facts)` gives each rule's
    first unmet condition (None when it holds), evaluating every distinct leaf test only once."""

    def __init__(self, conditions: Sequence[Mapping[str, Any]], params: Params) -> None:
        self._params = params
        self._leaves: list[Mapping[str, Any]] = []
        self._leaf_index: dict[tuple, int] = {}
        self._roots = [self._compile(condition) for condition in conditions]

    def _compile(self, condition: Mapping[str, Any]) -> _Node:
        for kind in ("all", "any", "none"):
            if kind in condition:
                children = tuple(self._compile(child) for child in condition[kind])
                return _Node(kind, -1, children, describe_condition(condition), named="named" in condition)
        key = tuple(sorted((k, repr(v)) for k, v in condition.items()))
        index = self._leaf_index.get(key)
        if index is None:
            index = self._leaf_index[key] = len(self._leaves)
            self._leaves.append(condition)
        return _Node("leaf", index, (), describe_leaf(condition))

    @property
    def distinct_leaves(self) -> int:
        return len(self._leaves)

    def leaf_results(self, facts: Facts) -> list[bool]:
        params = self._params
        return [leaf_holds(leaf, facts, params) for leaf in self._leaves]

    def why(self, facts: Facts, which: Callable[[int], bool] = lambda i: True) -> list[str | None]:
        """For each rule (in the order given at construction) the reference's `first_unmet`;
        rules for which `which(index)` is false are skipped (None)."""
        results = self.leaf_results(facts)
        return [root.first_unmet(results) if which(i) else None for i, root in enumerate(self._roots)]
