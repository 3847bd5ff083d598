"""In the aasm-2024 profile, shared rules cite the guideline (with its strength), not the article."""

from __future__ import annotations

import pytest

from cds_service.engine.ruleset import RULES_DIR, RuleFileError, load_all_rulesets, load_ruleset
from cds_service.tooling import fixtures as fx

LOW_FERRITIN_CHART = [fx.condition("rls"), fx.ferritin(40, days_ago=10), fx.tsat(25, days_ago=10)]


def _card(client, service: str, code: str) -> dict:
    response = client.post(f"/cds-services/{service}", json=fx.cds_request(LOW_FERRITIN_CHART))
    assert response.status_code == 200, response.text
    cards = {c["source"]["topic"]["code"]: c for c in response.json()["cards"]}
    return cards[code]


def test_guideline_profile_card_cites_the_aasm_guideline_and_its_strength(client):
    detail = _card(client, "rls-iron-aasm2024-patient-view", "start-oral-iron")["detail"]
    assert "Winkelman" in detail and "J Clin Sleep Med 2025" in detail
    assert "conditional recommendation" in detail


def test_article_profile_card_keeps_the_article_citation(client):
    detail = _card(client, "rls-iron-patient-view", "start-oral-iron")["detail"]
    assert "Winkelman" not in detail
    assert "article states" in detail


def test_every_guideline_rule_cites_a_guideline_with_a_strength():
    """Issue 12: each guideline rule cites the guideline and the strength of its statement."""
    ruleset = load_all_rulesets()["aasm-2024"]
    article_only = {"screen-for-rls", "pregnancy-iron-needs"}  # not addressed by the guideline
    for rule in ruleset.rules:
        if rule.outcome in article_only or rule.citation["source"] == "spec":
            continue
        assert rule.citation["source"] in {"aasm-2024", "irlssg-2018"}, rule.id
        assert rule.citation.get("strength"), rule.id


def test_a_citation_for_an_unknown_rule_stops_loading(tmp_path):
    profile = (RULES_DIR / "profiles" / "aasm-2024.yaml").read_text(encoding="utf-8")
    broken = tmp_path / "aasm-2024.yaml"
    broken.write_text(profile.replace("citations:\n", "citations:\n  no-such-rule: {source: aasm-2024, text: x}\n", 1), encoding="utf-8")
    with pytest.raises(RuleFileError, match="no-such-rule"):
        load_ruleset(broken, RULES_DIR)
