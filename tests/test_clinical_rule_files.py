"""The rule files as an auditor reads them: citations, parameters, reasons and visible precedence."""

from __future__ import annotations

import re

import pytest
import yaml

from cds_service.engine.ruleset import RULES_DIR, iter_leaves, load_all_rulesets

RULESETS = load_all_rulesets()
SOURCES = yaml.safe_load((RULES_DIR / "sources.yaml").read_text(encoding="utf-8"))["sources"]
ALL_RULES = {(p, r.id): r for p, rs in RULESETS.items() for r in rs.rules}
IRON_FAMILY = {"order-iron-studies", "start-oral-iron", "continue-oral-iron", "escalate-iv-iron", "iron-stores-adequate", "add-iron-to-dopamine-agonist"}
ADVISES_IRON = {"start-oral-iron", "continue-oral-iron", "escalate-iv-iron", "add-iron-to-dopamine-agonist"}


@pytest.mark.parametrize("key", sorted(ALL_RULES), ids=[f"{p}:{i}" for p, i in sorted(ALL_RULES)])
def test_rule_cites_a_known_source_and_is_named_after_its_outcome(key):
    rule = ALL_RULES[key]
    assert rule.citation["source"] in SOURCES, rule.id
    assert len(rule.citation["text"]) > 20
    assert rule.id == rule.outcome or rule.id.startswith(rule.outcome + "."), rule.id


def test_every_outcome_is_produced_by_some_rule_in_every_profile():
    for profile, ruleset in RULESETS.items():
        assert {r.outcome for r in ruleset.rules} == set(ruleset.outcomes), profile


def test_outcome_families_match_the_specification():
    outcomes = next(iter(RULESETS.values())).outcomes
    assert {c for c, o in outcomes.items() if "iron" in o.family} == IRON_FAMILY
    assert {c for c, o in outcomes.items() if "advises-iron" in o.family} == ADVISES_IRON
    assert outcomes["iron-overload-risk"].indicator == "critical"


def test_escalation_rules_name_their_reason_and_win_over_oral_iron():
    for profile, ruleset in RULESETS.items():
        reasons = set()
        for rule in ruleset.rules:
            if rule.outcome == "escalate-iv-iron":
                assert rule.reason in {"a", "b", "c", "d", "e", "f"} and rule.reason_text, rule.id
                assert {"start-oral-iron", "continue-oral-iron"} <= set(rule.overrides), rule.id
                reasons.add(rule.reason)
        assert reasons == ({"a", "b", "c", "d", "e", "f"} if profile == "aasm-2024" else {"a", "b", "c", "d", "f"})


def test_overload_risk_overrides_the_whole_iron_family_and_pregnancy():
    for ruleset in RULESETS.values():
        overload = [r for r in ruleset.rules if r.outcome == "iron-overload-risk"]
        assert len(overload) == 3
        for rule in overload:
            assert set(rule.overrides) == IRON_FAMILY | {"pregnancy-iron-needs"}, rule.id
            assert "rls" not in {leaf["field"] for leaf in iter_leaves(rule.when)}, "RLS is not required"


def test_every_rule_but_screen_and_overload_requires_rls():
    for (profile, rule_id), rule in ALL_RULES.items():
        leaves = list(iter_leaves(rule.when))
        requires_rls = rule.when.get("all") and {"fact": "conditions", "field": "rls", "is": True} in rule.when["all"]
        if rule.outcome == "screen-for-rls":
            assert {"fact": "conditions", "field": "rls", "is": False} in rule.when["all"], rule_id
        elif rule.outcome not in ("iron-overload-risk", "review-unreadable-record"):
            assert requires_rls, rule_id
        if rule.outcome in IRON_FAMILY:
            assert any(part.get("named") == "no_iron_overload" for part in rule.when["all"]), rule_id  # safety rule 2, by its shared name
        assert leaves


def test_rules_that_advise_iron_exclude_high_iron_indices_themselves():
    """Safety rule 1 holds in each rule, not only through precedence."""
    for (profile, rule_id), rule in ALL_RULES.items():
        if rule.outcome in ADVISES_IRON:
            params = {leaf.get("param") for part in rule.when["all"] if "none" in part for leaf in iter_leaves(part)}
            assert {"ferritin_overload", "tsat_overload"} <= params, rule_id


def test_thresholds_are_parameters_never_literals():
    for path in RULES_DIR.glob("*.rules.yaml"):
        text = path.read_text(encoding="utf-8")
        conditions = [line for line in text.splitlines() if "{fact:" in line]
        for line in conditions:
            assert not re.search(r"op: \"[<>=!]+\", (value|literal)", line), line
            if "op:" in line:
                assert "param:" in line, line


def test_guideline_rules_cite_the_guideline_with_strength():
    aasm_only = {r.id for r in RULESETS["aasm-2024"].rules} - {r.id for r in RULESETS["article"].rules}
    assert aasm_only
    for rule_id in aasm_only:
        citation = RULESETS["aasm-2024"].rule(rule_id).citation
        assert citation["source"] == "aasm-2024" and citation.get("strength"), rule_id
        assert "Winkelman" in citation["text"] and "2025" in citation["text"], rule_id
    tsat_ceiling = RULESETS["aasm-2024"].rule("iron-overload-risk.high-tsat").citation
    assert tsat_ceiling["source"] == "irlssg-2018"
