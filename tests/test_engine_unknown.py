"""Unknown data in the engine: a rule fires only when it holds whatever the unknown data is, and a
rule whose answer depends on it is silent and silences what it would have overridden. Checked on
both evaluators (the silencing is shared, the raw answers come from each)."""

from __future__ import annotations

import pytest

from cds_service.engine import RuleEngine
from cds_service.engine.conditions import holds_when_unknown
from cds_service.engine.ruleset import load_all_rulesets
from cds_service.tooling import fixtures as fx
from fhir_mappings import build_facts

RULESET = load_all_rulesets()["article"]
T = {"fact": "x", "field": "t", "is": True}
F = {"fact": "x", "field": "f", "is": True}
U = {"fact": "x", "field": "u", "is": True}
FACTS = {"x": {"t": True, "f": False, "u": False}}


def three(condition):
    return holds_when_unknown(condition, FACTS, {}, lambda fact, field: field == "u")


@pytest.mark.parametrize(
    "condition, expected",
    [
        (T, True), (F, False), (U, None),
        ({"all": [T, U]}, None), ({"all": [F, U]}, False), ({"all": [T, T]}, True),
        ({"any": [T, U]}, True), ({"any": [F, U]}, None), ({"any": [F, F]}, False),
        ({"none": [T, U]}, False), ({"none": [F, U]}, None), ({"none": [F]}, True),
    ],
)
def test_three_valued_meaning(condition, expected):
    assert three(condition) is expected


@pytest.fixture(scope="module", params=["python", "durable"])
def engine(request):
    built = RuleEngine(RULESET, request.param)
    yield built
    built.close()


def facts(*resources):
    return build_facts(fx.mapping_input([fx.patient(), fx.condition("rls"), *resources], params=RULESET.parameters)).to_engine()


def test_a_safety_rule_that_holds_whatever_the_unknown_data_is_fires(engine):
    chart = facts(fx.ferritin(450), fx.medication_administration("iron-sucrose", days_ago=30))
    result = engine.evaluate(chart, ("oral_iron.active", "oral_iron.on_record", "oral_iron.days"))
    assert "iron-overload-risk.high-ferritin" in result.fired_ids()


def test_a_rule_whose_answer_depends_on_unknown_data_is_silent_and_withheld(engine):
    result = engine.evaluate(facts(fx.ferritin(30)), ("iv_iron.recent", "iv_iron.days_since"))
    why = {s.rule.id: s.why for s in result.silent}
    assert result.fired_ids() == []
    assert why["start-oral-iron"] == "data unknown: iv_iron.recent"
    assert "start-oral-iron" in result.withheld


def test_an_undecided_rule_silences_what_it_would_have_overridden(engine):
    """IDA unknown: escalation (d) might fire, so start-oral-iron, which it overrides, may not."""
    result = engine.evaluate(facts(fx.ferritin(30)), ("conditions.ida",))
    why = {s.rule.id: s.why for s in result.silent}
    assert why["escalate-iv-iron.d-iron-deficiency-anemia"] == "data unknown: conditions.ida"
    assert why["start-oral-iron"] == "may be overridden by rule escalate-iv-iron.d-iron-deficiency-anemia, whose data is unknown"
    assert set(result.withheld) >= {"escalate-iv-iron", "start-oral-iron"}


def test_a_rule_that_fails_whatever_the_unknown_data_is_is_not_withheld(engine):
    chart = facts(fx.ferritin(30))
    chart["conditions"]["rls"] = False
    result = engine.evaluate(chart, ("conditions.pregnancy",))
    assert "pregnancy-iron-needs" not in result.withheld
    assert {s.rule.id: s.why for s in result.silent}["pregnancy-iron-needs"] == "conditions.rls is true"


def test_a_whole_fact_type_unknown_still_silences_every_rule_that_needs_it(engine):
    result = engine.evaluate(facts(fx.ferritin(30)), ("ferritin",))
    assert result.fired_ids() == []
    assert {s.rule.id: s.why for s in result.silent}["start-oral-iron"].startswith("data unknown: ferritin")
