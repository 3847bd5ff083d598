"""The reference evaluator: the rule files read directly in Python, no engine dependency."""

from __future__ import annotations

from cds_service.engine.conditions import Facts, holds
from cds_service.engine.ruleset import RuleSet


class PythonEvaluator:
    """Evaluates every rule of one profile against one fact set; stateless and thread-safe."""

    name = "python"

    def __init__(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset

    def fired(self, facts: Facts) -> list[str]:
        """Ids of the rules whose condition holds, in rule-file order (before precedence)."""
        params = self.ruleset.parameters
        return [rule.id for rule in self.ruleset.rules if holds(rule.when, facts, params)]

    def close(self) -> None:
        """Nothing to release."""
