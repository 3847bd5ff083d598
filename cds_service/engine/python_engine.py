"""The reference evaluator: the rule files read directly in Python, no engine dependency.

Each rule's condition is compiled once into closures (`conditions.compile_condition`), which
mean exactly what `conditions.holds` says; durable-rules is checked against this evaluator.
"""

from __future__ import annotations

from cds_service.engine.conditions import Facts, compile_condition
from cds_service.engine.ruleset import RuleSet


class PythonEvaluator:
    """Evaluates every rule of one profile against one fact set; stateless and thread-safe."""

    name = "python"

    def __init__(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset
        self._tests = tuple((rule.id, compile_condition(rule.when)) for rule in ruleset.rules)

    def fired(self, facts: Facts) -> list[str]:
        """Ids of the rules whose condition holds, in rule-file order (before precedence)."""
        params = self.ruleset.parameters
        return [rule_id for rule_id, test in self._tests if test(facts, params)]

    def close(self) -> None:
        """Nothing to release."""
