"""Cards as an EHR receives them from POST /cds-services/{id}, for realistic FHIR charts."""

from __future__ import annotations

import json
import re

import pytest
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.servicerequest import ServiceRequest

from cds_service.engine.ruleset import load_all_rulesets
from cds_service.pipeline.cards import OUTCOME_SYSTEM
from cds_service.tooling import fixtures as fx
from tests.conftest import serve

ARTICLE = "/cds-services/rls-iron-patient-view"
AASM = "/cds-services/rls-iron-aasm2024-patient-view"
RULESETS = load_all_rulesets()
RULE_IDS = {r.id for rs in RULESETS.values() for r in rs.rules}
needs_aasm = pytest.mark.skipif("aasm-2024" not in RULESETS, reason="aasm-2024 profile not present")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """One app for the module (start-up costs seconds); cards do not depend on earlier requests."""
    yield from serve(tmp_path_factory.mktemp("cards"))


def post(client, url: str, resources: list[dict], **kw) -> list[dict]:
    response = client.post(url, json=fx.cds_request(resources, **kw))
    assert response.status_code == 200, response.text
    body = response.json()
    text = json.dumps(body)
    assert "Jane" not in text and "Example" not in text  # the fixture patient's name never leaves
    return body["cards"]


def card_for(cards: list[dict], code: str) -> dict:
    found = [c for c in cards if c["source"]["topic"]["code"] == code]
    assert len(found) == 1, [c["source"]["topic"]["code"] for c in cards]
    return found[0]


def resources(card: dict) -> list[dict]:
    return [a["resource"] for s in card.get("suggestions", []) for a in s["actions"] if a.get("resource")]


def check_card(card: dict, profile: str) -> None:
    assert card["source"]["topic"]["system"] == OUTCOME_SYSTEM
    assert card["source"]["label"] == RULESETS[profile].label
    assert len(card["summary"]) < 140
    assert card["overrideReasons"]
    for link in card["links"]:
        assert link["type"] == "absolute"
        base, anchor = link["url"].split("#")
        assert base == "http://testserver/rules/catalog" and anchor in RULE_IDS
    for resource in resources(card):
        {"MedicationRequest": MedicationRequest, "ServiceRequest": ServiceRequest}[resource["resourceType"]].model_validate(resource)
        assert resource["subject"] == {"reference": "Patient/pat-1"}


def test_start_oral_iron_card_through_http(client):
    cards = post(client, ARTICLE, [fx.condition("rls"), fx.ferritin(32, days_ago=20)])
    card = card_for(cards, "start-oral-iron")
    check_card(card, "article")
    assert card["summary"] == f"Ferritin 32 ng/mL ({fx.day(20)}) is at or below 50: consider oral iron"
    assert card["indicator"] == "warning" and card["selectionBehavior"] == "at-most-one"
    medication, recheck = resources(card)
    assert medication["medicationCodeableConcept"]["coding"][0]["code"] == "310325"
    assert recheck["occurrencePeriod"] == {"start": "2026-12-24", "end": "2027-01-07"}  # request date + 28 .. + 42
    assert f"Ferritin 32 ng/mL ({fx.day(20)})" in card["detail"]


def test_order_iron_studies_card_through_http(client):
    card = card_for(post(client, ARTICLE, [fx.condition("rls")]), "order-iron-studies")
    check_card(card, "article")
    assert [r["code"]["coding"][0]["code"] for r in resources(card)] == ["2276-4", "50190-5"]
    assert all("no iron tablets or iron-rich food for 24 h" in r["note"][0]["text"] for r in resources(card))


def test_iron_stores_adequate_card_through_http(client):
    card = card_for(post(client, ARTICLE, [fx.condition("rls"), fx.ferritin(80, days_ago=3)]), "iron-stores-adequate")
    check_card(card, "article")
    assert "suggestions" not in card
    assert "the article states only 15 %" in card["detail"]


def test_child_gets_the_card_without_an_adult_dose(client):
    chart = [fx.patient(birth_date=fx.birth_date_for_age(12)), fx.condition("rls"), fx.ferritin(30, days_ago=2)]
    card = card_for(post(client, ARTICLE, chart), "start-oral-iron")
    check_card(card, "article")
    assert card["indicator"] == "warning"
    assert "MedicationRequest" not in {r["resourceType"] for r in resources(card)}
    assert "weight-based" in card["detail"] and "paediatric prescriber" in card["detail"]


def test_escalation_for_anemia_refers_for_iv_iron(client):
    card = card_for(post(client, ARTICLE, [fx.condition("rls"), fx.condition("ida"), fx.ferritin(30, days_ago=2)]), "escalate-iv-iron")
    check_card(card, "article")
    assert re.search(r"- \(d\) ", card["detail"])
    assert "the article states 76 %" in card["detail"].lower()
    (referral,) = resources(card)
    assert "IV iron infusion" in referral["code"]["text"]


def test_escalation_with_iv_iron_allergy_has_no_referral(client):
    chart = [fx.condition("rls"), fx.condition("ida"), fx.ferritin(30, days_ago=2), fx.allergy("ferric-carboxymaltose")]
    card = card_for(post(client, ARTICLE, chart), "escalate-iv-iron")
    assert "suggestions" not in card
    assert "IV iron allergy on record" in card["detail"] and "specialist" in card["detail"]


def test_iron_overload_offers_to_stop_the_ehr_order(client):
    chart = [fx.condition("rls"), fx.ferritin(350, days_ago=2), fx.medication_request("ferrous-sulfate", days_ago=40, mid="medrx-iron")]
    card = card_for(post(client, ARTICLE, chart), "iron-overload-risk")
    check_card(card, "article")
    assert card["indicator"] == "critical"
    actions = [a for s in card["suggestions"] for a in s["actions"]]
    assert [(a["type"], a["resourceId"]) for a in actions] == [("delete", "MedicationRequest/medrx-iron")]
    assert "reads falsely high" in card["detail"]


def test_screen_for_rls_and_aggravating_medication_cards(client):
    screen = card_for(post(client, ARTICLE, [fx.condition("ida"), fx.ferritin(30, days_ago=2)]), "screen-for-rls")
    assert "The article states 35 %" in screen["detail"] and "5 %" in screen["detail"]
    review = card_for(post(client, ARTICLE, [fx.condition("rls"), fx.ferritin(80, days_ago=2), fx.medication_request("sertraline")]), "review-aggravating-medication")
    assert "sertraline" in review["summary"]


def test_cards_come_sorted_by_severity(client):
    chart = [fx.condition("rls"), fx.condition("pregnancy"), fx.ferritin(30, days_ago=2), fx.medication_request("ropinirole")]
    cards = post(client, ARTICLE, chart)
    order = {"critical": 0, "warning": 1, "info": 2}
    keys = [(order[c["indicator"]], c["source"]["topic"]["code"]) for c in cards]
    assert keys == sorted(keys) and len(cards) >= 2


@needs_aasm
def test_aasm_without_tsat_asks_for_the_iron_panel(client):
    card = card_for(post(client, AASM, [fx.condition("rls"), fx.ferritin(60, days_ago=3)]), "order-iron-studies")
    check_card(card, "aasm-2024")
    assert "no TSAT" in card["summary"]
    assert "50190-5" in [r["code"]["coding"][0]["code"] for r in resources(card)]


@needs_aasm
def test_aasm_iv_only_band_refers_for_ferric_carboxymaltose(client):
    card = card_for(post(client, AASM, [fx.condition("rls"), fx.ferritin(90, days_ago=3), fx.tsat(25, days_ago=3)]), "escalate-iv-iron")
    check_card(card, "aasm-2024")
    (referral,) = resources(card)
    assert "ferric carboxymaltose" in referral["code"]["text"]


# -- order-select and order-sign (docs/clinical-specification.md, order hooks) -------------------------------------------
@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_draft_oral_iron_gets_a_recheck_counted_from_today_not_a_second_order(client, hook):
    chart = [fx.condition("rls"), fx.ferritin(32, days_ago=20)]
    cards = post(client, f"/cds-services/rls-iron-{hook}", chart, hook=hook, drafts=[fx.draft_order("ferrous-sulfate")])
    card = card_for(cards, "continue-oral-iron")
    check_card(card, "article")
    (recheck,) = resources(card)
    assert recheck["resourceType"] == "ServiceRequest"
    assert recheck["occurrencePeriod"] == {"start": "2026-12-24", "end": "2027-01-07"}


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_draft_iron_with_high_ferritin_is_critical_without_deleting_the_draft(client, hook):
    chart = [fx.condition("rls"), fx.ferritin(350, days_ago=20)]
    cards = post(client, f"/cds-services/rls-iron-{hook}", chart, hook=hook, drafts=[fx.draft_order("ferrous-sulfate", mid="draft-1")])
    card = card_for(cards, "iron-overload-risk")
    assert card["indicator"] == "critical"
    assert "suggestions" not in card
    assert "Do not sign the iron order being placed" in card["detail"]


def test_draft_iv_iron_in_pregnancy_warns_about_the_first_trimester(client):
    chart = [fx.condition("rls"), fx.condition("pregnancy"), fx.ferritin(32, days_ago=20)]
    cards = post(client, "/cds-services/rls-iron-order-sign", chart, hook="order-sign", drafts=[fx.draft_order("ferric-carboxymaltose")])
    card = card_for(cards, "pregnancy-iron-needs")
    assert card["indicator"] == "warning"
    assert "first trimester" in card["detail"] and "obstetric input" in card["detail"]
