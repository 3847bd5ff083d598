"""The reference evaluator: the rule files read directly in Python, no engine dependency.

The conditions of a profile's rules are compiled once into one program of distinct nodes
(`explain.Explainer`: each leaf test compiled by `conditions.compile_leaf`, each shared group
evaluated once); a rule fires when its root node holds. The same node values then say why each
silent rule did not hold, so a request evaluates each test once for both. What they mean is
`conditions.holds` (tests/test_engine_explain.py), and durable-rules is checked against this
evaluator.
"""

from __future__ import annotations

from cds_service.engine.conditions import Facts
from cds_service.engine.explain import NodeValues
from cds_service.engine.ruleset import RuleSet


class PythonEvaluator:
    """Evaluates every rule of one profile against one fact set; stateless and thread-safe."""

    name = "python"

    def __init__(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset
        self._explainer = ruleset.explainer
        self._ids = tuple(rule.id for rule in ruleset.rules)

    def fired(self, facts: Facts, values: NodeValues | None = None) -> list[str]:
        """Ids of the rules whose condition holds, in rule-file order (before precedence);
        `values` are the fact set's node values when the caller has them already."""
        if values is None:
            values = self._explainer.node_values(facts)
        return [self._ids[i] for i in self._explainer.holding(values)]

    def close(self) -> None:
        """Nothing to release."""
