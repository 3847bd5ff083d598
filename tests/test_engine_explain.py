"""The compiled explainer says exactly what the reference `first_unmet` says, for every rule.

The explainer (cds_service/engine/explain.py) is what the request path uses to give each silent
rule its "why not"; `conditions.first_unmet` is the plain reading of the rule files. They must
give the same text on the realistic fact sets (every rule case) and on generated ones.
"""

from __future__ import annotations

from datetime import datetime

from hypothesis import HealthCheck, given, settings

from cds_service.engine import normalize_facts
from cds_service.engine.conditions import first_unmet, holds
from cds_service.engine.ruleset import RULES_DIR, load_all_rulesets
from cds_service.tooling import fixtures as fx
from cds_service.tooling.offline import evaluate_document
from cds_service.tooling.ruletests import load_cases
from tests.test_engine_differential import fact_sets

RULESETS = load_all_rulesets()


def assert_same_reasons(facts: dict, label: str = "") -> None:
    normal = normalize_facts(facts)
    for profile, ruleset in RULESETS.items():
        params = ruleset.parameters
        reference = [first_unmet(rule.when, normal, params) for rule in ruleset.rules]
        assert ruleset.explainer.why(normal) == reference, f"{label} profile {profile}"
        # None exactly when the rule holds: the explainer never invents a reason for a firing rule.
        assert [r is None for r in reference] == [holds(rule.when, normal, params) for rule in ruleset.rules]


@settings(max_examples=3_000, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(fact_sets())
def test_generated_fact_sets_explained_as_the_reference(facts):
    assert_same_reasons(facts)


def test_rule_cases_explained_as_the_reference(tmp_path):
    from cds_service.runtime import build_runtime
    from cds_service.settings import Settings

    runtime = build_runtime(Settings(auth_mode="off", rule_engine="python", database_url=f"sqlite:///{tmp_path / 'd.db'}"))
    cases = list(load_cases(RULES_DIR))
    assert len(cases) > 100
    for case in cases:
        now = case.now if isinstance(case.now, datetime) else fx.DEFAULT_NOW
        evaluation = evaluate_document(runtime, case.request, profile=case.profile, now=now)
        assert_same_reasons(evaluation.facts.to_engine(), case.name)
    runtime.close()


def test_skipped_rules_are_not_explained():
    ruleset = next(iter(RULESETS.values()))
    reasons = ruleset.explainer.why(normalize_facts({}), lambda index: index == 0)
    assert reasons[1:] == [None] * (len(ruleset.rules) - 1)
    assert reasons[0] == first_unmet(ruleset.rules[0].when, {}, ruleset.parameters)


def test_shared_leaves_are_evaluated_once():
    for ruleset in RULESETS.values():
        leaves = sum(1 for rule in ruleset.rules for _ in _leaves(rule.when))
        assert ruleset.explainer.distinct_leaves < leaves


def _leaves(condition):
    from cds_service.engine.ruleset import iter_leaves

    return iter_leaves(condition)


def _card_conditions() -> list:
    """Every condition of rules/cards.yaml (`when`, `unless`), as compiled at load and as written."""
    from cds_service.pipeline.card_texts import load_card_texts

    texts = load_card_texts()
    found = []
    for spec in texts.outcomes.values():
        found += [(t.test, t.when) for t in (*spec.summaries, *spec.detail) if t.when is not None]
        found += [(s.test, s.unless) for s in spec.suggestions.values() if s.unless is not None]
    for lines in texts.facts_used.values():
        found += [(t.test, t.when) for alternatives in lines for t in alternatives if t.when is not None]
    return found


CARD_CONDITIONS = _card_conditions()


@settings(max_examples=1_000, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(fact_sets())
def test_compiled_card_conditions_hold_as_the_reference(facts):
    """The card texts' conditions are compiled into closures (`compile_condition`) at load; they
    hold exactly when the plain reading (`holds`) says, under every profile's parameters."""
    assert len(CARD_CONDITIONS) > 10
    normal = normalize_facts(facts)
    for ruleset in RULESETS.values():
        for test, condition in CARD_CONDITIONS:
            assert test(normal, ruleset.parameters) == holds(condition, normal, ruleset.parameters), condition
