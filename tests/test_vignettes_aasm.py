"""Clinical vignettes for the `aasm-2024` profile (docs/clinical-specification.md, parameters), through HTTP.

Iron is indicated at ferritin <= 75 ug/L or TSAT < 20 %; 75 < ferritin <= 100 is the IV-only
band (reason (e)); a patient not on iron needs both a current ferritin and a current TSAT; on
oral iron ferritin alone judges a 12-week trial.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

import cds_service.tooling.fixtures as fx
from tests.test_vignettes import (  # noqa: F401  (vclient is a fixture)
    Vignette,
    both,
    continue_has_recheck,
    created,
    deletes_only,
    detail_says,
    has_referral,
    iron_studies_note,
    iv_infusion,
    man,
    no_referral,
    oral_iron_statement,
    params,
    rls,
    run_vignette,
    vclient,
    woman,
)

PREFIX = "rls-iron-aasm2024"


def names_fcm(cards: dict[str, dict[str, Any]]) -> None:
    """The aasm-2024 referral names its preferred IV product, ferric carboxymaltose."""
    card = cards["escalate-iv-iron"]
    assert "ferric carboxymaltose" in (repr(created(card, "ServiceRequest")) + card["detail"]).lower()


def start_recheck_window_12_weeks(cards: dict[str, dict[str, Any]]) -> None:
    """Recheck 84 to 98 days after today's start (2027-02-18 to 2027-03-04)."""
    text = repr(created(cards["start-oral-iron"], "ServiceRequest")) + cards["start-oral-iron"]["detail"]
    assert "2027-02-18" in text and "2027-03-04" in text, "aasm-2024 recheck window 84-98 days"


AASM = [
    # --- not on iron: ferritin and TSAT both needed
    Vignette("Ferritin 60, TSAT 25 % -> start (ferritin <= 75)", [rls(), fx.ferritin(60), fx.tsat(25)], {"start-oral-iron"}, {"start-oral-iron": "warning"}, check=start_recheck_window_12_weeks),
    Vignette("Ferritin 75, TSAT 20 % -> start (boundary, at or below 75)", [rls(), fx.ferritin(75), fx.tsat(20)], {"start-oral-iron"}),
    Vignette("Ferritin 60 with no TSAT -> order iron studies only", [rls(), fx.ferritin(60)], {"order-iron-studies"}, {"order-iron-studies": "info"}, check=iron_studies_note),
    Vignette("Ferritin 150 with no TSAT -> order iron studies (TSAT criterion cannot be judged)", [rls(), fx.ferritin(150)], {"order-iron-studies"}),
    Vignette("Ferritin 60, TSAT 100 days old -> order iron studies", [rls(), fx.ferritin(60), fx.tsat(25, days_ago=100)], {"order-iron-studies"}),
    Vignette("No ferritin, TSAT 15 % -> order iron studies", [rls(), fx.tsat(15)], {"order-iron-studies"}),
    Vignette("Ferritin 90, TSAT 25 % -> escalate (e) IV-only band", [rls(), fx.ferritin(90), fx.tsat(25)], {"escalate-iv-iron"}, {"escalate-iv-iron": "warning"}, reasons="e", check=both(has_referral, names_fcm)),
    Vignette("Ferritin 76, TSAT 20 % -> escalate (e) (TSAT 20 is not < 20)", [rls(), fx.ferritin(76), fx.tsat(20)], {"escalate-iv-iron"}, reasons="e"),
    Vignette("Ferritin 100, TSAT 25 % -> escalate (e) (band is inclusive of 100)", [rls(), fx.ferritin(100), fx.tsat(25)], {"escalate-iv-iron"}, reasons="e"),
    Vignette("Ferritin 101, TSAT 25 % -> iron stores adequate", [rls(), fx.ferritin(101), fx.tsat(25)], {"iron-stores-adequate"}),
    Vignette("Ferritin 90, TSAT 15 % -> start (oral-or-IV criterion wins over the band)", [rls(), fx.ferritin(90), fx.tsat(15)], {"start-oral-iron"}),
    Vignette("Ferritin 120, TSAT 15 % -> start (TSAT < 20 %)", [rls(), fx.ferritin(120), fx.tsat(15)], {"start-oral-iron"}),
    Vignette("Ferritin 120, derived TSAT 16 % (iron 48 / TIBC 300) -> start", [rls(), fx.ferritin(120), fx.serum_iron(48), fx.tibc(300)], {"start-oral-iron"}),
    Vignette("Ferritin 90 ug/L reported as 202 pmol/L, TSAT 25 % -> escalate (e)", [rls(), fx.ferritin(202, unit="pmol/L", ucum="pmol/L", loinc="14723-1"), fx.tsat(25)], {"escalate-iv-iron"}, reasons="e"),
    # --- IDA, intolerance, absorption with the wider threshold
    Vignette("51M Hb 12.5, ferritin 70, TSAT 25 % -> IDA -> escalate (d)", [man(), rls(), fx.hemoglobin(12.5), fx.ferritin(70), fx.tsat(25)], {"escalate-iv-iron"}, reasons="d"),
    Vignette("Oral iron intolerance, ferritin 70, TSAT 25 % -> escalate (b)", [rls(), fx.allergy("ferrous-sulfate"), fx.ferritin(70), fx.tsat(25)], {"escalate-iv-iron"}, reasons="b"),
    Vignette("Crohn's disease, ferritin 120, TSAT 15 % -> escalate (c)", [rls(), fx.condition("crohns"), fx.ferritin(120), fx.tsat(15)], {"escalate-iv-iron"}, reasons="c"),
    # --- on oral iron: ferritin alone, 84-day trial
    Vignette("On ferrous sulfate 50 days, ferritin 60 at day 45, no TSAT -> continue", [rls(), oral_iron_statement(50), fx.ferritin(60, days_ago=5)], {"continue-oral-iron"}, check=continue_has_recheck),
    Vignette("On ferrous sulfate 50 days, ferritin 90 on day 45 -> escalate (e)", [rls(), oral_iron_statement(50), fx.ferritin(90, days_ago=5)], {"escalate-iv-iron"}, reasons="e"),
    Vignette("On ferrous sulfate 90 days, ferritin 70 on day 87 -> escalate (a)", [rls(), oral_iron_statement(90), fx.ferritin(70, days_ago=3)], {"escalate-iv-iron"}, reasons="a"),
    Vignette("On ferrous sulfate 90 days, ferritin 90 on day 87 -> escalate (e)", [rls(), oral_iron_statement(90), fx.ferritin(90, days_ago=3)], {"escalate-iv-iron"}, reasons="e"),
    Vignette("On ferrous sulfate 90 days, ferritin 110 on day 87 with TSAT 10 % -> adequate (TSAT ignored on oral iron)", [rls(), oral_iron_statement(90), fx.ferritin(110, days_ago=3), fx.tsat(10, days_ago=3)], {"iron-stores-adequate"}),
    Vignette("On ferrous sulfate 90 days, last ferritin 60 on day 30 -> recheck due -> order iron studies", [rls(), oral_iron_statement(90), fx.ferritin(60, days_ago=60)], {"order-iron-studies"}),
    Vignette("On ferrous sulfate 40 days (article trial done, AASM not), ferritin 60 on day 35 -> continue", [rls(), oral_iron_statement(40), fx.ferritin(60, days_ago=5)], {"continue-oral-iron"}),
    # --- recent IV iron counts as "on iron" for the TSAT requirement
    Vignette("Iron sucrose 90 days ago, ferritin 60 taken 60 days after, no TSAT -> escalate (f)", [rls(), iv_infusion(90), fx.ferritin(60, days_ago=30)], {"escalate-iv-iron"}, reasons="f"),
    Vignette("Iron sucrose 90 days ago, ferritin 150 taken 60 days after, no TSAT -> adequate", [rls(), iv_infusion(90), fx.ferritin(150, days_ago=30)], {"iron-stores-adequate"}),
    # --- safety
    Vignette("Safety 1: ferritin 60, TSAT 50 %, not on iron -> order iron studies", [rls(), fx.ferritin(60), fx.tsat(50)], {"order-iron-studies"}),
    Vignette("Safety 1: ferritin 350, TSAT 15 %, not on iron -> order iron studies (inflammation?)", [rls(), fx.ferritin(350), fx.tsat(15)], {"order-iron-studies"}),
    Vignette("Safety 1: ferritin 350, TSAT 30 %, not on iron -> adequate with the flag", [rls(), fx.ferritin(350), fx.tsat(30)], {"iron-stores-adequate"}, check=detail_says("300", code="iron-stores-adequate")),
    Vignette("Safety 1: ferritin 90 (band), TSAT 46 %, not on iron -> order iron studies", [rls(), fx.ferritin(90), fx.tsat(46)], {"order-iron-studies"}),
    Vignette("On oral iron, TSAT 45 % -> iron overload risk", [rls(), fx.medication_request("ferrous-sulfate", mid="mr-fs-ehr"), fx.ferritin(60), fx.tsat(45)], {"iron-overload-risk"}, {"iron-overload-risk": "critical"}, check=deletes_only({"mr-fs-ehr"})),
    Vignette("Safety 2: hemochromatosis, ferritin 60, TSAT 15 % -> no card", [rls(), fx.condition("hemochromatosis"), fx.ferritin(60), fx.tsat(15)], set()),
    Vignette("Safety 4: pregnant, ferritin 90, TSAT 25 % -> escalate (e) without referral + pregnancy needs", [woman(30), rls(), fx.condition("pregnancy"), fx.ferritin(90), fx.tsat(25)], {"escalate-iv-iron", "pregnancy-iron-needs"}, reasons="e", check=no_referral(("trimester", "obstetric"))),
    Vignette("Safety 5: on pramipexole, ferritin 60, TSAT 25 % -> start + dopamine agonist card citing augmentation", [rls(), fx.medication_request("pramipexole"), fx.ferritin(60), fx.tsat(25)], {"start-oral-iron", "add-iron-to-dopamine-agonist"}, check=detail_says("augmentation", code="add-iron-to-dopamine-agonist")),
]

ORDERS = [
    Vignette("order-sign ferrous sulfate, ferritin 60, no TSAT -> order iron studies (warning)", [rls(), fx.ferritin(60)], {"order-iron-studies"}, {"order-iron-studies": "warning"}, hook="order-sign", drafts=[fx.draft_order("ferrous-sulfate", mid="d-fs")]),
    Vignette("order-select ferrous sulfate, ferritin 60, TSAT 25 % -> continue", [rls(), fx.ferritin(60), fx.tsat(25)], {"continue-oral-iron"}, hook="order-select", drafts=[fx.draft_order("ferrous-sulfate", mid="d-fs")]),
    Vignette("order-sign ferric carboxymaltose, ferritin 90, TSAT 25 % -> no card (IV iron just ordered)", [rls(), fx.ferritin(90), fx.tsat(25)], set(), hook="order-sign", drafts=[fx.draft_order("ferric-carboxymaltose", mid="d-iv")]),
    Vignette("order-sign ferrous sulfate, coeliac, ferritin 60, TSAT 25 % -> escalate (c)", [rls(), fx.condition("celiac"), fx.ferritin(60), fx.tsat(25)], {"escalate-iv-iron"}, hook="order-sign", drafts=[fx.draft_order("ferrous-sulfate", mid="d-fs")], reasons="c"),
]


@pytest.mark.parametrize("vignette", params(AASM))
def test_aasm_patient_view(vclient: TestClient, vignette: Vignette) -> None:
    run_vignette(vclient, PREFIX, vignette)


@pytest.mark.parametrize("vignette", params(ORDERS))
def test_aasm_order_hooks(vclient: TestClient, vignette: Vignette) -> None:
    run_vignette(vclient, PREFIX, vignette)


def test_aasm_covers_reason_e_and_band_edges() -> None:
    assert "e" in "".join(v.reasons for v in AASM)
    assert {"start-oral-iron", "continue-oral-iron", "escalate-iv-iron", "iron-stores-adequate", "order-iron-studies", "iron-overload-risk"} <= set().union(*(v.expect for v in AASM + ORDERS))


MORE = [
    Vignette("Not on iron, ferritin 350, no TSAT -> studies (TSAT requirement beats safety 1's 'otherwise')", [rls(), fx.ferritin(350)], {"order-iron-studies"}),
    Vignette("On oral iron 50 days, ferritin 110 -> adequate", [rls(), oral_iron_statement(50), fx.ferritin(110, days_ago=5)], {"iron-stores-adequate"}),
    Vignette("On oral iron 50 days, ferritin 60, TSAT 50 % -> overload", [rls(), oral_iron_statement(50), fx.ferritin(60, days_ago=5), fx.tsat(50, days_ago=5)], {"iron-overload-risk"}),
    Vignette("Dopamine agonist, ferritin 90, TSAT 25 % (band, iron not indicated) -> escalate (e), no dopamine-agonist card", [rls(), fx.medication_request("ropinirole"), fx.ferritin(90), fx.tsat(25)], {"escalate-iv-iron"}, reasons="e"),
    Vignette("Dopamine agonist, ferritin 120, TSAT 15 % (iron indicated) -> start + dopamine-agonist card", [rls(), fx.medication_request("ropinirole"), fx.ferritin(120), fx.tsat(15)], {"start-oral-iron", "add-iron-to-dopamine-agonist"}),
    Vignette("62F Hb 11.0, ferritin 120, TSAT 15 % -> no IDA (ferritin above 75) -> start", [woman(), rls(), fx.hemoglobin(11.0), fx.ferritin(120), fx.tsat(15)], {"start-oral-iron"}),
    Vignette("No RLS, Hb 10.0 with ferritin 70 -> IDA at 75 -> screen for RLS", [woman(), fx.hemoglobin(10.0), fx.ferritin(70), fx.tsat(25)], {"screen-for-rls"}),
    Vignette("Hemochromatosis on oral iron, ferritin 60 -> overload only", [rls(), fx.condition("hemochromatosis"), oral_iron_statement(30), fx.ferritin(60)], {"iron-overload-risk"}),
    Vignette("Child aged 10, ferritin 60, TSAT 25 % -> start without an adult-dose order", [fx.patient(birth_date=fx.birth_date_for_age(10)), rls(), fx.ferritin(60), fx.tsat(25)], {"start-oral-iron"}, check=lambda cards: None if not created(cards["start-oral-iron"], "MedicationRequest") else pytest.fail("adult dose for a child")),
]


def test_article_and_aasm_differ_on_ferritin_70(vclient: TestClient) -> None:
    """The same chart (RLS, ferritin 70, TSAT 25 %) is adequate under the article and treated under aasm-2024."""
    from tests.test_vignettes import post

    chart = [rls(), fx.ferritin(70), fx.tsat(25)]
    assert set(post(vclient, "rls-iron", chart)) == {"iron-stores-adequate"}
    assert set(post(vclient, PREFIX, chart)) == {"start-oral-iron"}


@pytest.mark.parametrize("vignette", params(MORE))
def test_aasm_more(vclient: TestClient, vignette: Vignette) -> None:
    run_vignette(vclient, PREFIX, vignette)


def continue_window(first: str, last: str):
    def check(cards: dict[str, dict[str, Any]]) -> None:
        text = repr(created(cards["continue-oral-iron"], "ServiceRequest"))
        assert first in text and last in text, f"aasm-2024 recheck window {first}..{last}"
    return check


ORDERS_MORE = [
    Vignette("order-sign ferrous sulfate while on EHR oral iron 20 days, ferritin 60, no TSAT -> continue (on iron: no TSAT needed)", [rls(), oral_iron_statement(20), fx.ferritin(60, days_ago=25)], {"continue-oral-iron"}, hook="order-sign", drafts=[fx.draft_order("ferrous-sulfate", mid="d-fs")]),
    Vignette("On ferrous sulfate since 2026-11-16, ferritin 60 -> recheck 2027-02-08 to 2027-02-22 (84-98 days)", [rls(), oral_iron_statement(10), fx.ferritin(60, days_ago=20)], {"continue-oral-iron"}, check=continue_window("2027-02-08", "2027-02-22")),
    Vignette("order-sign pramipexole, ferritin 60, no TSAT -> order iron studies (warning)", [rls(), fx.ferritin(60)], {"order-iron-studies"}, {"order-iron-studies": "warning"}, hook="order-sign", drafts=[fx.draft_order("pramipexole", mid="d-pr")]),
    Vignette("order-sign IV iron with TSAT 46 % -> overload critical, no delete", [rls(), fx.ferritin(60), fx.tsat(46)], {"iron-overload-risk"}, {"iron-overload-risk": "critical"}, hook="order-sign", drafts=[fx.draft_order("ferric-carboxymaltose", mid="d-iv")], check=deletes_only(set())),
]


@pytest.mark.parametrize("vignette", params(ORDERS_MORE))
def test_aasm_more_order_hooks(vclient: TestClient, vignette: Vignette) -> None:
    run_vignette(vclient, PREFIX, vignette)
