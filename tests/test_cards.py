"""Cards from hand-built facts and fired rules, with the real profiles (parameters, texts, labels).

What a clinician sees: one card per outcome, a specific summary under 140 characters, the facts
used with their dates, the reason and the citation, and suggestions that respect the safety
rules of docs/clinical-specification.md, safety rules.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import pytest
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.servicerequest import ServiceRequest

from cds_service.engine import EngineResult, FiredRule
from cds_service.engine.ruleset import Rule, load_all_rulesets
from cds_service.hooks import Card
from cds_service.pipeline.cards import OUTCOME_SYSTEM, build_cards
from fhir_mappings.facts import (
    AllergiesFact,
    ConditionsFact,
    ContextFact,
    Evidence,
    FactSet,
    FerritinFact,
    HemoglobinFact,
    IvIronFact,
    MedicationsFact,
    OralIronFact,
    PatientFact,
    TsatFact,
)

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=timezone.utc)
BASE = "https://cds.example.org"
RULESETS = load_all_rulesets()
ARTICLE = RULESETS["article"]
AASM = RULESETS.get("aasm-2024")
ARTICLE_STATS = ("35", "5", "15", "30", "76")


# -- builders ---------------------------------------------------------------------------------
def ferritin(value: float, date: str = "2026-10-02", days_ago: int = 55, **kw: Any) -> FerritinFact:
    return FerritinFact(current=True, value_ug_per_l=value, days_ago=days_ago, date=date, value_display=f"{value:g} ng/mL", **kw)


def tsat(value: float, date: str = "2026-11-20", days_ago: int = 6) -> TsatFact:
    return TsatFact(current=True, value_pct=value, days_ago=days_ago, date=date, value_display=f"{value:g} %")


ADULT = PatientFact(age_known=True, age_years=51, age_months=612, is_child=False, sex="female")
CHILD = PatientFact(age_known=True, age_years=12, age_months=150, is_child=True, sex="female")


def facts(**kw: Any) -> FactSet:
    base: dict[str, Any] = {"patient": ADULT, "conditions": ConditionsFact(rls=True)}
    base.update(kw)
    return FactSet(**base)


def fired(outcome: str, rule_id: str | None = None, *, reason: str | None = None, reason_text: str | None = None, indicator: str | None = None, reads: tuple[str, ...] = ("conditions", "ferritin"), source: str = "article", text: str | None = None, strength: str | None = None, title: str | None = None) -> FiredRule:
    citation: dict[str, Any] = {"source": source, "text": text or f"Passage for {outcome}.", "section": "docs/clinical-specification.md, evidence"}
    if strength:
        citation["strength"] = strength
    rule = Rule(
        id=rule_id or outcome,
        title=title or f"Title of {rule_id or outcome}",
        outcome=outcome,
        when={"all": [{"fact": t, "field": "x", "is": True} for t in reads]},
        citation=citation,
        file="test.rules.yaml",
        indicator=indicator,
        reason=reason,
        reason_text=reason_text,
    )
    return FiredRule(rule=rule, matched_facts=tuple(sorted(reads)))


def cards(fired_rules: list[FiredRule], fact_set: FactSet, ruleset=ARTICLE, patient_id: str | None = "pat-1") -> list[dict]:
    result = EngineResult(engine="python", fired=tuple(fired_rules), silent=())
    built = build_cards(result, fact_set, ruleset, BASE, patient_id=patient_id, now=NOW)
    for card in built:  # plain JSON, exactly what the Card model would dump
        assert Card.model_validate(card).model_dump(exclude_none=True) == card
    return built


def one(fired_rules: list[FiredRule], fact_set: FactSet, ruleset=ARTICLE) -> dict:
    (card,) = cards(fired_rules, fact_set, ruleset)
    return card


def resources(card: dict) -> list[dict]:
    return [a["resource"] for s in card.get("suggestions", []) for a in s["actions"] if a.get("resource")]


def validate(resource: dict) -> None:
    {"MedicationRequest": MedicationRequest, "ServiceRequest": ServiceRequest}[resource["resourceType"]].model_validate(resource)


# One realistic situation per outcome (facts + fired rule), used by the contract tests below.
SCENARIOS: dict[str, tuple[list[FiredRule], FactSet]] = {
    "order-iron-studies": ([fired("order-iron-studies", "order-iron-studies.no-ferritin")], facts()),
    "start-oral-iron": ([fired("start-oral-iron")], facts(ferritin=ferritin(32))),
    "continue-oral-iron": (
        [fired("continue-oral-iron", reads=("conditions", "ferritin", "oral_iron"))],
        facts(ferritin=ferritin(32), oral_iron=OralIronFact(active=True, on_record=True, days=16), evidence=Evidence(oral_iron_start_date="2026-11-10")),
    ),
    "escalate-iv-iron": (
        [fired("escalate-iv-iron", "escalate-iv-iron.a", reason="a", reason_text="ferritin still at or below the threshold after an adequate oral trial", reads=("conditions", "ferritin", "oral_iron"))],
        facts(ferritin=ferritin(30, date="2026-11-20", days_ago=6), oral_iron=OralIronFact(active=True, on_record=True, days=40), evidence=Evidence(oral_iron_start_date="2026-10-17")),
    ),
    "iron-stores-adequate": ([fired("iron-stores-adequate")], facts(ferritin=ferritin(80))),
    "iron-overload-risk": (
        [fired("iron-overload-risk", indicator=None, reads=("ferritin", "oral_iron"))],
        facts(ferritin=ferritin(350), oral_iron=OralIronFact(active=True, on_record=True, days=90), evidence=Evidence(active_iron_request_ids=("medrx-1",))),
    ),
    "screen-for-rls": ([fired("screen-for-rls", reads=("conditions",))], facts(conditions=ConditionsFact(ida=True))),
    "pregnancy-iron-needs": ([fired("pregnancy-iron-needs", reads=("conditions",))], facts(conditions=ConditionsFact(rls=True, pregnancy=True))),
    "add-iron-to-dopamine-agonist": (
        [fired("add-iron-to-dopamine-agonist", reads=("conditions", "ferritin", "medications"))],
        facts(ferritin=ferritin(40), medications=MedicationsFact(dopamine_agonist=True), evidence=Evidence(dopamine_agonist_names=("ropinirole",))),
    ),
    "review-aggravating-medication": (
        [fired("review-aggravating-medication", reads=("conditions", "medications"))],
        facts(medications=MedicationsFact(aggravating=True), evidence=Evidence(aggravating_medication_names=("sertraline 50 MG Oral Tablet",))),
    ),
}
PROFILES = [ARTICLE] + ([AASM] if AASM else [])


# -- the contract every card keeps ----------------------------------------------------------------
@pytest.mark.parametrize("ruleset", PROFILES, ids=lambda r: r.profile)
@pytest.mark.parametrize("code", sorted(SCENARIOS))
def test_every_card_keeps_the_contract(code, ruleset):
    rules, fact_set = SCENARIOS[code]
    card = one(rules, fact_set, ruleset)
    outcome = ruleset.outcomes[code]
    assert card["source"]["topic"] == {"system": OUTCOME_SYSTEM, "code": code, "display": outcome.display}
    assert card["source"]["label"] == ruleset.label
    uuid.UUID(card["uuid"])
    assert 0 < len(card["summary"]) < 140
    assert "None" not in card["summary"] and "{" not in card["summary"]
    assert card["indicator"] == outcome.indicator
    assert card["links"] == [{"label": f"Rule {r.rule.id}", "url": f"{BASE}/rules/catalog#{r.rule.id}", "type": "absolute"} for r in rules]
    assert len(card["overrideReasons"]) >= 3 and all(r["code"] and r["display"] for r in card["overrideReasons"])
    detail = card["detail"]
    assert "**Facts used:**" in detail and "**Source:**" in detail and "None" not in detail and "{" not in detail
    if card.get("suggestions"):
        assert card["selectionBehavior"] in ("at-most-one", "any")
        for suggestion in card["suggestions"]:
            uuid.UUID(suggestion["uuid"])
            assert suggestion["label"] and len(suggestion["label"]) < 140
    else:
        assert "selectionBehavior" not in card
    for resource in resources(card):
        validate(resource)
        assert resource["subject"] == {"reference": "Patient/pat-1"}


def test_each_build_gives_fresh_card_and_suggestion_uuids():
    rules, fact_set = SCENARIOS["start-oral-iron"]
    first, second = one(rules, fact_set), one(rules, fact_set)
    assert first["uuid"] != second["uuid"]
    assert first["suggestions"][0]["uuid"] != second["suggestions"][0]["uuid"]


# -- summaries and detail ----------------------------------------------------------------------
def test_start_oral_iron_summary_names_value_date_and_threshold():
    card = one(*SCENARIOS["start-oral-iron"])
    assert card["summary"] == "Ferritin 32 ng/mL (2026-10-02) is at or below 50: consider oral iron"
    assert "Ferritin 32 ng/mL (2026-10-02)" in card["detail"]
    assert "ferrous sulfate 325 mg" in card["detail"]


@pytest.mark.skipif(AASM is None, reason="aasm-2024 profile not present")
def test_aasm_start_names_its_own_threshold_and_label():
    card = one([fired("start-oral-iron")], facts(ferritin=ferritin(70), tsat=tsat(25)), AASM)
    assert card["summary"] == "Ferritin 70 ng/mL (2026-10-02) is at or below 75: consider oral iron"
    assert "75 ug/L, or TSAT below 20 %" in card["detail"]
    assert card["source"]["label"] == AASM.label != ARTICLE.label


@pytest.mark.skipif(AASM is None, reason="aasm-2024 profile not present")
def test_aasm_start_on_low_tsat_says_so():
    card = one([fired("start-oral-iron", reads=("conditions", "ferritin", "tsat"))], facts(ferritin=ferritin(90), tsat=tsat(15)), AASM)
    assert card["summary"] == "TSAT 15 % (2026-11-20) is below 20 %: consider oral iron"


def test_citation_is_quoted_with_source_and_strength():
    rules = [
        fired("start-oral-iron", "a-rule", text='Supplementation "becomes necessary when serum ferritin levels drop to 50 mcg/L or below".'),
        fired("start-oral-iron", "b-rule", source="aasm-2024", text="Treat with oral or IV iron at ferritin <= 75 or TSAT < 20 %.", strength="good practice statement"),
    ]
    detail = one(rules, facts(ferritin=ferritin(32)))["detail"]
    assert '- The article states: Supplementation "becomes necessary' in detail
    assert "- AASM 2024 RLS guideline (Winkelman et al., J Clin Sleep Med 2025): Treat with oral or IV iron" in detail
    assert "(strength: good practice statement)" in detail


def test_two_rules_of_one_outcome_give_one_card_with_the_most_severe_indicator():
    rules = [
        fired("order-iron-studies", "order-iron-studies.no-ferritin"),
        fired("order-iron-studies", "order-iron-studies.draft-without-ferritin", indicator="warning"),
    ]
    card = one(rules, facts(oral_iron=OralIronFact(active=True, draft=True), context=ContextFact(hook="order-sign", order_hook=True)))
    assert card["indicator"] == "warning"
    assert [link["url"].split("#")[1] for link in card["links"]] == ["order-iron-studies.draft-without-ferritin", "order-iron-studies.no-ferritin"]
    assert card["summary"] == "No ferritin in the last 365 days: check ferritin and iron studies before this order"


def test_cards_are_sorted_by_severity_then_outcome_code():
    fact_set = facts(
        ferritin=ferritin(350),
        oral_iron=OralIronFact(active=True, on_record=True, days=90),
        medications=MedicationsFact(aggravating=True),
        conditions=ConditionsFact(rls=True, pregnancy=True),
        evidence=Evidence(active_iron_request_ids=("medrx-1",), aggravating_medication_names=("sertraline",)),
    )
    rules = [
        fired("review-aggravating-medication"),
        fired("pregnancy-iron-needs"),
        fired("order-iron-studies", indicator="warning"),
        fired("iron-overload-risk"),
    ]
    codes = [(c["indicator"], c["source"]["topic"]["code"]) for c in cards(rules, fact_set)]
    assert codes == [
        ("critical", "iron-overload-risk"),
        ("warning", "order-iron-studies"),
        ("info", "pregnancy-iron-needs"),
        ("info", "review-aggravating-medication"),
    ]


def test_rule_titles_show_parameter_values_instead_of_names():
    rule = fired("continue-oral-iron", title="On oral iron for less than oral_trial_days, ferritin at or below ferritin_low", reads=("conditions", "ferritin", "oral_iron"))
    card = one([rule], SCENARIOS["continue-oral-iron"][1])
    assert "- On oral iron for less than 28 days, ferritin at or below 50 ug/L" in card["detail"]


def test_article_referral_does_not_repeat_a_generic_product_name():
    card = one(*SCENARIOS["escalate-iv-iron"])
    (referral,) = resources(card)
    assert referral["code"]["text"] == "Referral for IV iron infusion"
    assert card["suggestions"][0]["label"] == "Refer for IV iron infusion"


def test_no_rule_fired_gives_no_card():
    assert cards([], facts(ferritin=ferritin(32))) == []


# -- each outcome's words and suggestions ------------------------------------------------------
def test_start_oral_iron_suggests_ferrous_sulfate_and_a_recheck_in_the_window():
    card = one(*SCENARIOS["start-oral-iron"])
    (suggestion,) = card["suggestions"]
    assert card["selectionBehavior"] == "at-most-one"
    medication, recheck = (a["resource"] for a in suggestion["actions"])
    assert medication["resourceType"] == "MedicationRequest"
    assert medication["medicationCodeableConcept"]["coding"][0]["code"] == "310325"
    assert medication["status"] == "draft" and medication["intent"] == "order"
    assert recheck["code"]["coding"][0]["code"] == "2276-4"
    assert recheck["occurrencePeriod"] == {"start": "2026-12-24", "end": "2027-01-07"}  # today + 28 .. + 42
    assert "2026-12-24 to 2027-01-07" in suggestion["label"]


@pytest.mark.skipif(AASM is None, reason="aasm-2024 profile not present")
def test_aasm_recheck_window_is_84_to_98_days():
    card = one([fired("start-oral-iron")], facts(ferritin=ferritin(70), tsat=tsat(25)), AASM)
    recheck = resources(card)[1]
    assert recheck["occurrencePeriod"] == {"start": "2027-02-18", "end": "2027-03-04"}


def test_continue_oral_iron_rechecks_in_the_window_after_the_course_start():
    card = one(*SCENARIOS["continue-oral-iron"])
    (recheck,) = resources(card)
    assert recheck["resourceType"] == "ServiceRequest" and recheck["code"]["coding"][0]["code"] == "2276-4"
    assert recheck["occurrencePeriod"] == {"start": "2026-12-08", "end": "2026-12-22"}  # 2026-11-10 + 28 .. + 42
    assert "On oral iron since 2026-11-10 (16 days)" in card["detail"]
    assert "Morning draw" in recheck["note"][0]["text"]


def test_continue_oral_iron_with_a_draft_counts_from_today():
    fact_set = facts(ferritin=ferritin(32), oral_iron=OralIronFact(active=True, draft=True, days=0), context=ContextFact(hook="order-sign", order_hook=True))
    card = one([fired("continue-oral-iron", reads=("conditions", "ferritin", "oral_iron"))], fact_set)
    assert resources(card)[0]["occurrencePeriod"] == {"start": "2026-12-24", "end": "2027-01-07"}
    assert card["summary"] == "Oral iron ordered with ferritin 32 ng/mL (2026-10-02): recheck ferritin 2026-12-24 to 2027-01-07"
    assert "MedicationRequest" not in {r["resourceType"] for r in resources(card)}


def test_order_iron_studies_asks_for_ferritin_and_iron_panel_with_the_draw_note():
    card = one(*SCENARIOS["order-iron-studies"])
    assert card["summary"] == "RLS with no ferritin in the last 365 days: order ferritin and iron studies"
    found = resources(card)
    assert [r["code"]["coding"][0]["code"] for r in found] == ["2276-4", "50190-5"]
    for resource in found:
        note = resource["note"][0]["text"]
        assert "Morning draw" in note and "no iron tablets or iron-rich food for 24 h before" in note
    assert "No ferritin within 365 days" in card["detail"]


def test_order_iron_studies_on_high_tsat_says_repeat_in_the_morning():
    fact_set = facts(ferritin=ferritin(30), tsat=tsat(52))
    card = one([fired("order-iron-studies", "order-iron-studies.high-indices", reads=("conditions", "ferritin", "tsat"))], fact_set)
    assert card["summary"].startswith("TSAT 52 % (2026-11-20) is at or above 45 %: repeat iron studies")
    assert "reads falsely high" in card["detail"] and "inflammation" in card["detail"]


def test_order_iron_studies_recheck_due_on_oral_iron():
    fact_set = facts(ferritin=ferritin(30, date="2026-10-02", days_ago=55, days_since_oral_start=-5), oral_iron=OralIronFact(active=True, on_record=True, days=60))
    card = one([fired("order-iron-studies", "order-iron-studies.recheck-due", reads=("conditions", "ferritin", "oral_iron"))], fact_set)
    assert card["summary"] == "On oral iron 60 days with no ferritin since day 28: recheck ferritin and iron studies"


@pytest.mark.skipif(AASM is None, reason="aasm-2024 profile not present")
def test_aasm_iron_studies_without_tsat_ask_for_the_iron_panel():
    card = one([fired("order-iron-studies", "order-iron-studies.tsat-missing", reads=("conditions", "ferritin", "tsat"))], facts(ferritin=ferritin(60)), AASM)
    assert card["summary"] == "Ferritin 60 ng/mL (2026-10-02) but no TSAT in 90 days: order the iron panel to judge iron need"
    assert "50190-5" in [r["code"]["coding"][0]["code"] for r in resources(card)]
    assert "No TSAT within 90 days" in card["detail"]


def test_escalation_names_every_reason_that_applied_and_refers_for_iv_iron():
    rules = [
        fired("escalate-iv-iron", "escalate-iv-iron.a", reason="a", reason_text="ferritin still low after an adequate oral trial", reads=("conditions", "ferritin", "oral_iron")),
        fired("escalate-iv-iron", "escalate-iv-iron.d", reason="d", reason_text="iron deficiency anemia", reads=("conditions", "ferritin", "hemoglobin")),
    ]
    fact_set = facts(
        ferritin=ferritin(30, date="2026-11-20", days_ago=6),
        hemoglobin=HemoglobinFact(current=True, value_g_dl=10.9, days_ago=6, threshold_g_dl=12.0, anemic=True, date="2026-11-20", value_display="10.9 g/dL"),
        oral_iron=OralIronFact(active=True, on_record=True, days=40),
    )
    card = one(rules, fact_set)
    assert card["summary"] == "Ferritin 30 ng/mL (2026-11-20) still at or below 50 after 40 days of oral iron: consider IV iron"
    assert "- (a) ferritin still low after an adequate oral trial" in card["detail"]
    assert "- (d) iron deficiency anemia" in card["detail"]
    assert "the article states 76 %" in card["detail"].lower()
    assert "Hb 10.9 g/dL (2026-11-20, below the anemia threshold 12.0 g/dL)" in card["detail"]
    (referral,) = resources(card)
    assert referral["resourceType"] == "ServiceRequest" and "IV iron infusion" in referral["code"]["text"]
    assert "(a) ferritin still low after an adequate oral trial" in [n["text"] for n in referral["note"]]


@pytest.mark.skipif(AASM is None, reason="aasm-2024 profile not present")
def test_aasm_escalation_in_the_iv_only_band_names_ferric_carboxymaltose():
    rule = fired("escalate-iv-iron", "escalate-iv-iron.e", reason="e", reason_text="ferritin above 75 and at most 100 ug/L", source="aasm-2024")
    card = one([rule], facts(ferritin=ferritin(90), tsat=tsat(25)), AASM)
    assert card["summary"] == "Ferritin 90 ng/mL (2026-10-02) is above 75 and at most 100: only IV iron is advised"
    (referral,) = resources(card)
    assert "ferric carboxymaltose" in referral["code"]["text"]
    assert "ferric carboxymaltose" in card["suggestions"][0]["label"]


def test_escalation_with_iv_iron_allergy_names_it_and_asks_for_a_specialist_instead_of_a_referral():
    rules, fact_set = SCENARIOS["escalate-iv-iron"]
    fact_set = replace(fact_set, allergies=AllergiesFact(iv_iron_allergy=True), evidence=Evidence(iv_iron_allergy_names=("ferric carboxymaltose",)))
    card = one([replace(rules[0], matched_facts=("allergies", "conditions", "ferritin", "oral_iron"))], fact_set)
    assert "suggestions" not in card and "selectionBehavior" not in card
    assert "IV iron allergy on record (ferric carboxymaltose)" in card["detail"]
    assert "specialist" in card["detail"]
    assert "IV iron allergy is on record" in card["summary"] and card["indicator"] == "warning"


def test_escalation_with_an_unnamed_iv_iron_allergy_still_says_so():
    rules, fact_set = SCENARIOS["escalate-iv-iron"]
    card = one(rules, replace(fact_set, allergies=AllergiesFact(iv_iron_allergy=True)))
    assert "suggestions" not in card
    assert "IV iron allergy on record: no referral is suggested" in card["detail"]


def test_escalation_in_pregnancy_has_no_referral_and_the_first_trimester_caution():
    rules, fact_set = SCENARIOS["escalate-iv-iron"]
    fact_set = replace(fact_set, conditions=ConditionsFact(rls=True, pregnancy=True))
    card = one(rules, fact_set)
    assert "suggestions" not in card
    assert "generally avoided in the first trimester" in card["detail"] and "obstetric input" in card["detail"]
    assert card["indicator"] == "warning"


def test_escalation_reason_f_speaks_of_a_repeat_course():
    rule = fired("escalate-iv-iron", "escalate-iv-iron.f", reason="f", reason_text="recent IV iron and ferritin still low 56 days after it", reads=("conditions", "ferritin", "iv_iron"))
    fact_set = facts(ferritin=ferritin(20, date="2026-11-20", days_ago=6), iv_iron=IvIronFact(recent=True, days_since=70), evidence=Evidence(iv_iron_date="2026-09-17"))
    card = one([rule], fact_set)
    assert card["summary"] == "Ferritin 20 ng/mL (2026-11-20) still at or below 50 70 days after IV iron: consider a repeat course"
    assert "IV iron 70 days ago (2026-09-17)" in card["detail"]
    assert "ongoing blood loss" in card["detail"]


def test_iron_overload_offers_to_stop_each_active_ehr_iron_order_and_warns_about_tsat_timing():
    rules, fact_set = SCENARIOS["iron-overload-risk"]
    fact_set = replace(fact_set, evidence=Evidence(active_iron_request_ids=("medrx-1", "medrx-2")))
    card = one(rules, fact_set)
    assert card["indicator"] == "critical"
    actions = [a for s in card["suggestions"] for a in s["actions"]]
    assert [(a["type"], a["resourceId"]) for a in actions] == [("delete", "MedicationRequest/medrx-1"), ("delete", "MedicationRequest/medrx-2")]
    assert card["selectionBehavior"] == "any"
    assert "within 24 h of oral iron reads falsely high" in card["detail"]
    assert card["summary"] == "On iron with ferritin 350 ng/mL (2026-10-02) above 300: risk of iron overload, stop or review iron"


def test_iron_overload_with_only_a_draft_order_deletes_nothing():
    fact_set = facts(tsat=tsat(50), oral_iron=OralIronFact(active=True, draft=True), context=ContextFact(hook="order-sign", order_hook=True))
    card = one([fired("iron-overload-risk", reads=("oral_iron", "tsat"))], fact_set)
    assert "suggestions" not in card
    assert card["indicator"] == "critical"
    assert "Do not sign the iron order being placed" in card["detail"]
    assert card["summary"] == "Iron being ordered with TSAT 50 % (2026-11-20) at or above 45 %: risk of iron overload"


def test_iron_stores_adequate_has_no_suggestion_and_says_blood_ferritin_is_not_brain_iron():
    card = one(*SCENARIOS["iron-stores-adequate"])
    assert "suggestions" not in card
    assert card["summary"] == "Ferritin 80 ng/mL (2026-10-02) is above 50: iron stores adequate, no iron needed"
    assert "does not reflect brain iron" in card["detail"]
    assert "the article states only 15 %" in card["detail"]
    assert "Flag" not in card["detail"]


@pytest.mark.parametrize(
    "fact_kw, flag",
    [({"ferritin": ferritin(350)}, "Flag: ferritin 350 ng/mL is above 300 ug/L"), ({"ferritin": ferritin(80), "tsat": tsat(52)}, "Flag: TSAT 52 % is at or above 45 %")],
)
def test_iron_stores_adequate_flags_high_ferritin_or_tsat(fact_kw, flag):
    card = one([fired("iron-stores-adequate", reads=("conditions", "ferritin", "tsat"))], facts(**fact_kw))
    assert flag in card["detail"]
    assert "no iron" in card["summary"]


def test_screen_for_rls_quotes_the_article():
    card = one(*SCENARIOS["screen-for-rls"])
    assert "suggestions" not in card
    assert "The article states 35 % of people with iron deficiency anemia have RLS symptoms, compared with 5 %" in card["detail"]
    assert "No RLS on record" in card["detail"]


def test_pregnancy_card_gives_daily_need_and_monitoring():
    card = one(*SCENARIOS["pregnancy-iron-needs"])
    assert "27 mg/day" in card["summary"] and "27 mg/day" in card["detail"]
    assert "third trimester" in card["detail"] and "Monitor ferritin" in card["detail"]
    assert "first trimester" not in card["detail"]


def test_pregnancy_card_with_a_draft_iv_iron_order_carries_the_first_trimester_caution():
    fact_set = facts(conditions=ConditionsFact(rls=True, pregnancy=True), iv_iron=IvIronFact(draft=True), context=ContextFact(hook="order-select", order_hook=True))
    card = one([fired("pregnancy-iron-needs", indicator="warning", reads=("conditions", "iv_iron"))], fact_set)
    assert card["indicator"] == "warning"
    assert "first trimester" in card["summary"] and "obstetric input" in card["detail"]


def test_dopamine_agonist_card_names_the_drug_and_never_suggests_one():
    card = one(*SCENARIOS["add-iron-to-dopamine-agonist"])
    assert card["summary"] == "Ferritin 40 ng/mL (2026-10-02) on ropinirole: add iron to the dopamine agonist"
    assert "Combine iron with the dopamine agonist (ropinirole)" in card["detail"]
    assert "does not suggest starting or increasing a dopamine agonist" in card["detail"]
    assert "suggestions" not in card
    assert "augmentation" not in card["detail"].split("low ferritin is a risk factor for augmentation")[1]  # no AASM caution in article


@pytest.mark.skipif(AASM is None, reason="aasm-2024 profile not present")
def test_aasm_dopamine_agonist_card_carries_the_guideline_caution():
    rules, fact_set = SCENARIOS["add-iron-to-dopamine-agonist"]
    card = one(rules, fact_set, AASM)
    caution = " ".join(AASM.texts["dopamine_agonist_caution"].split())
    assert caution and caution in card["detail"]


def test_aggravating_medication_card_names_the_medication():
    card = one(*SCENARIOS["review-aggravating-medication"])
    assert card["summary"] == "RLS may be worsened by sertraline 50 MG Oral Tablet: review this medication"
    assert "RLS-aggravating medication: sertraline 50 MG Oral Tablet" in card["detail"]


# -- safety rules across every card -------------------------------------------------------------
@pytest.mark.parametrize("code", sorted(SCENARIOS))
def test_children_never_get_an_adult_dose_medication_request(code):
    rules, fact_set = SCENARIOS[code]
    adult = one(rules, fact_set)
    child = one(rules, replace(fact_set, patient=CHILD))
    assert "MedicationRequest" not in {r["resourceType"] for r in resources(child)}
    assert child["indicator"] == adult["indicator"]
    assert child["source"]["topic"] == adult["source"]["topic"]
    if code in ("start-oral-iron", "continue-oral-iron", "escalate-iv-iron", "add-iron-to-dopamine-agonist", "pregnancy-iron-needs"):
        assert "dosing in children is weight-based and needs a paediatric prescriber" in child["detail"]
    assert "325 mg" not in child["detail"]


def test_an_adult_does_get_the_oral_iron_order():
    """The child test above could not pass vacuously: the same scenario gives an adult the order."""
    assert "MedicationRequest" in {r["resourceType"] for r in resources(one(*SCENARIOS["start-oral-iron"]))}


def _all_scenario_cards() -> list[dict]:
    out = []
    for ruleset in PROFILES:
        for rules, fact_set in SCENARIOS.values():
            out += cards(rules, fact_set, ruleset)
            out += cards(rules, replace(fact_set, patient=CHILD), ruleset)
    return out


def test_no_card_suggests_a_dopamine_agonist():
    for card in _all_scenario_cards():
        text = str(resources(card)).lower()
        for drug in ("pramipexole", "ropinirole", "rotigotine"):
            assert drug not in text


STAT = re.compile(r"\b(" + "|".join(ARTICLE_STATS) + r") ?%")


def assert_article_statistics_quoted(card: dict) -> int:
    """Safety rule 6: every line that carries 35 %, 5 %, 15 %, 30 % or 76 % says 'the article states' before it."""
    checked = 0
    for line in (card["summary"] + "\n" + card["detail"]).splitlines():
        match = STAT.search(line)
        if match:
            checked += 1
            assert "the article states" in line[: match.start()].lower(), line
    return checked


def test_article_statistics_are_always_quoted_as_the_article_states():
    anemia = one([fired("escalate-iv-iron", reason="d", reason_text="iron deficiency anemia")], facts(ferritin=ferritin(30), conditions=ConditionsFact(rls=True, ida=True)))
    checked = sum(assert_article_statistics_quoted(card) for card in _all_scenario_cards() + [anemia])
    assert checked >= 4  # 35/5 (screen), 15 (adequate), 30 (start), 76 (escalate d)


def test_suggested_resources_carry_no_patient_name_and_refer_to_the_context_patient():
    for card in _all_scenario_cards():
        for resource in resources(card):
            assert resource["subject"] == {"reference": "Patient/pat-1"}
            assert "name" not in str(resource).replace("display", "")


def test_without_a_patient_id_no_resource_is_suggested():
    rules, fact_set = SCENARIOS["start-oral-iron"]
    (card,) = cards(rules, fact_set, patient_id=None)
    assert "suggestions" not in card


# -- robustness -------------------------------------------------------------------------------
def test_long_medication_names_keep_the_summary_under_140_characters():
    names = tuple(f"very long aggravating medication product name number {i} 50 MG Oral Tablet" for i in range(4))
    fact_set = facts(medications=MedicationsFact(aggravating=True), evidence=Evidence(aggravating_medication_names=names))
    card = one([fired("review-aggravating-medication", reads=("conditions", "medications"))], fact_set)
    assert len(card["summary"]) < 140 and card["summary"].endswith("…")


def test_names_from_the_chart_are_escaped_in_markdown():
    fact_set = facts(medications=MedicationsFact(aggravating=True), evidence=Evidence(aggravating_medication_names=("**bold** [x](http://evil)",)))
    card = one([fired("review-aggravating-medication", reads=("conditions", "medications"))], fact_set)
    assert "\\*\\*bold\\*\\* \\[x\\](http://evil)" in card["detail"]
    assert "[x](http://evil)" not in card["detail"]


def test_missing_values_fall_back_to_a_sentence_without_blanks():
    rules, _ = SCENARIOS["escalate-iv-iron"]
    card = one(rules, facts(ferritin=FerritinFact(current=True, value_ug_per_l=30.0, days_ago=6, date="2026-11-20")))
    assert card["summary"] == "Ferritin 30 ug/L (2026-11-20): consider IV iron"


def test_every_real_rule_makes_a_valid_card():
    """Whatever the rule files say today, each rule alone produces a card that keeps the contract."""
    fact_set = facts(ferritin=ferritin(40), tsat=tsat(25), oral_iron=OralIronFact(active=True, on_record=True, days=40), evidence=Evidence(active_iron_request_ids=("medrx-1",)))
    for ruleset in PROFILES:
        for rule in ruleset.rules:
            (card,) = cards([FiredRule(rule=rule, matched_facts=rule.fact_types())], fact_set, ruleset)
            assert card["source"]["topic"]["code"] == rule.outcome
            assert len(card["summary"]) < 140 and "{" not in card["detail"]
            assert card["links"][0]["url"] == f"{BASE}/rules/catalog#{rule.id}"
            assert_article_statistics_quoted(card)
            for resource in resources(card):
                validate(resource)
