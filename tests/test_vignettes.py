"""Clinical vignettes for the `article` profile, written from docs/clinical-specification.md (not from the rules).

Each case is a short chart a clinician would describe, posted over HTTP to the real CDS
service, with the exact expected outcome set and the key card's indicator. The point is an
independent reading of the spec: a failure means either the implementation or this reading is
wrong, and defects are marked xfail(strict=True) so that the fix flips them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import pytest
from fastapi.testclient import TestClient

import cds_service.tooling.fixtures as fx
from cds_service.tooling.fixtures import DEFAULT_NOW
from tests.conftest import serve

OUTCOME_SYSTEM = "https://cds.example.org/rls-iron/outcome"
IRON_FAMILY = {"order-iron-studies", "start-oral-iron", "continue-oral-iron", "escalate-iv-iron", "iron-stores-adequate", "add-iron-to-dopamine-agonist"}
ADVISES_IRON = {"start-oral-iron", "continue-oral-iron", "escalate-iv-iron", "add-iron-to-dopamine-agonist"}


@dataclass
class Vignette:
    """A named chart and what the spec says the service must answer for it."""

    name: str
    resources: list[dict[str, Any]]
    expect: set[str]
    indicators: dict[str, str] = field(default_factory=dict)
    hook: str = "patient-view"
    drafts: list[dict[str, Any]] | None = None
    selections: list[str] | None = None
    reasons: str = ""  # escalation reasons (a)-(f) that the escalate card must name
    check: Callable[[dict[str, dict[str, Any]]], None] | None = None
    defect: str | None = None  # xfail(strict) reason when the implementation is wrong


@pytest.fixture(scope="module")
def vclient(tmp_path_factory) -> Iterator[TestClient]:
    """One app for the module (start-up dominates), with the suite's fixed clock."""
    yield from serve(tmp_path_factory.mktemp("vignettes"))


def post(client: TestClient, prefix: str, resources: list[dict[str, Any]], hook: str = "patient-view", drafts: list[dict[str, Any]] | None = None, selections: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """POST a CDS Hooks request; outcome code -> card (asserting one card per outcome)."""
    request = fx.cds_request(resources, hook=hook, drafts=drafts, selections=selections)
    response = client.post(f"/cds-services/{prefix}-{hook}", json=request)
    assert response.status_code == 200, response.text
    cards = response.json()["cards"]
    codes = [card["source"]["topic"]["code"] for card in cards]
    assert len(codes) == len(set(codes)), f"more than one card per outcome: {codes}"
    return {card["source"]["topic"]["code"]: card for card in cards}


def actions(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [action for suggestion in card.get("suggestions", []) for action in suggestion.get("actions", [])]


def created(card: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [a["resource"] for a in actions(card) if a.get("type") == "create" and a.get("resource", {}).get("resourceType") == rtype]


def is_referral(resource: dict[str, Any]) -> bool:
    text = repr(resource).lower()
    return "referral" in text or "infusion" in text or "3457005" in text


def run_vignette(client: TestClient, prefix: str, v: Vignette) -> None:
    cards = post(client, prefix, v.resources, hook=v.hook, drafts=v.drafts, selections=v.selections)
    assert set(cards) == v.expect, f"{v.name}: got {sorted(cards)}"
    for code, indicator in v.indicators.items():
        assert cards[code]["indicator"] == indicator, f"{v.name}: {code} indicator {cards[code]['indicator']}"
    for reason in v.reasons:
        assert f"({reason})" in cards["escalate-iv-iron"]["detail"], f"{v.name}: reason ({reason}) not named"
    if v.check:
        v.check(cards)


def params(vignettes: list[Vignette]) -> list[Any]:
    return [pytest.param(v, id=v.name, marks=[pytest.mark.xfail(strict=True, reason=v.defect)] if v.defect else []) for v in vignettes]


# --- small chart helpers -----------------------------------------------------------------

def rls() -> dict[str, Any]:
    return fx.condition("rls")


def man(age: int = 51) -> dict[str, Any]:
    return fx.patient(gender="male", birth_date=fx.birth_date_for_age(age), name=("John", "Example"))


def woman(age: int = 62) -> dict[str, Any]:
    return fx.patient(gender="female", birth_date=fx.birth_date_for_age(age))


def oral_iron_statement(days: int) -> dict[str, Any]:
    return fx.medication_statement("ferrous-sulfate", days_ago=days)


def oral_iron_order(days: int, mid: str = "mr-fs-ehr") -> dict[str, Any]:
    return fx.medication_request("ferrous-sulfate", days_ago=days, mid=mid)


def iv_infusion(days: int) -> dict[str, Any]:
    return fx.medication_administration("iron-sucrose", days_ago=days)


# --- checks ---------------------------------------------------------------------------------

def start_has_ferrous_sulfate_and_recheck(cards: dict[str, dict[str, Any]]) -> None:
    card = cards["start-oral-iron"]
    meds = created(card, "MedicationRequest")
    assert meds and "310325" in repr(meds[0]), "start-oral-iron suggests ferrous sulfate 325 mg"
    assert created(card, "ServiceRequest"), "start-oral-iron carries a ferritin recheck ServiceRequest"


def continue_has_recheck(cards: dict[str, dict[str, Any]]) -> None:
    card = cards["continue-oral-iron"]
    assert created(card, "ServiceRequest"), "continue-oral-iron carries the ferritin recheck"
    assert not created(card, "MedicationRequest"), "no second oral iron order"


def iron_studies_note(cards: dict[str, dict[str, Any]]) -> None:
    requests = created(cards["order-iron-studies"], "ServiceRequest")
    assert requests and "2276-4" in repr(requests), "order-iron-studies orders ferritin (LOINC 2276-4)"
    text = repr(requests).lower()
    assert "morning" in text and "24 h" in text, "safety rule 7: morning draw, no iron for 24 h"


def no_medication_request(code: str) -> Callable[[dict[str, dict[str, Any]]], None]:
    def check(cards: dict[str, dict[str, Any]]) -> None:
        assert not created(cards[code], "MedicationRequest"), "safety rule 3: no adult-dose MedicationRequest for a child"
        detail = cards[code]["detail"].lower()
        assert "weight" in detail and ("paediatric" in detail or "pediatric" in detail)
    return check


def no_referral(extra_words: tuple[str, ...] = ()) -> Callable[[dict[str, dict[str, Any]]], None]:
    def check(cards: dict[str, dict[str, Any]]) -> None:
        card = cards["escalate-iv-iron"]
        assert not [r for r in created(card, "ServiceRequest") if is_referral(r)], "no IV iron referral suggestion"
        for word in extra_words:
            assert word in card["detail"].lower(), f"detail mentions {word!r}"
    return check


def has_referral(cards: dict[str, dict[str, Any]]) -> None:
    assert any(is_referral(r) for r in created(cards["escalate-iv-iron"], "ServiceRequest")), "IV iron referral suggested"


def deleted_id(action: dict[str, Any]) -> str:
    """The id a CDS Hooks 2.0 delete action names (resourceId "Type/id", or a list of them)."""
    ref = action.get("resourceId") or ""
    ref = ref[0] if isinstance(ref, list) else ref
    assert ref.startswith("MedicationRequest/"), f"delete names a MedicationRequest: {ref!r}"
    return ref.split("/", 1)[1]


def deletes_only(ids: set[str]) -> Callable[[dict[str, dict[str, Any]]], None]:
    def check(cards: dict[str, dict[str, Any]]) -> None:
        deleted = {deleted_id(a) for a in actions(cards["iron-overload-risk"]) if a.get("type") == "delete"}
        assert deleted == ids, f"delete actions name {deleted}, expected {ids}"
    return check


def detail_says(*words: str, code: str) -> Callable[[dict[str, dict[str, Any]]], None]:
    def check(cards: dict[str, dict[str, Any]]) -> None:
        detail = cards[code]["detail"].lower()
        for word in words:
            assert word.lower() in detail, f"{code} detail mentions {word!r}"
    return check


def both(*checks: Callable[[dict[str, dict[str, Any]]], None]) -> Callable[[dict[str, dict[str, Any]]], None]:
    def check(cards: dict[str, dict[str, Any]]) -> None:
        for c in checks:
            c(cards)
    return check


PRIOR_ORDER = fx.medication_request("ferrous-sulfate", days_ago=40, status="completed", mid="mr-fs-first")

ARTICLE = [
    # --- work-up and start
    Vignette("62F RLS ferritin 38 two weeks ago, no iron -> start oral iron", [woman(), rls(), fx.ferritin(38, days_ago=14)], {"start-oral-iron"}, {"start-oral-iron": "warning"}, check=start_has_ferrous_sulfate_and_recheck),
    Vignette("RLS coded ICD-10-CM G25.81, ferritin 30 -> start", [fx.condition("rls-icd"), fx.ferritin(30)], {"start-oral-iron"}),
    Vignette("RLS with no ferritin on record -> order iron studies", [rls()], {"order-iron-studies"}, {"order-iron-studies": "info"}, check=iron_studies_note),
    Vignette("RLS, only ferritin is 400 days old -> order iron studies", [rls(), fx.ferritin(30, days_ago=400)], {"order-iron-studies"}),
    Vignette("RLS, ferritin 30 exactly 365 days ago is still current -> start", [rls(), fx.ferritin(30, days_ago=365)], {"start-oral-iron"}),
    Vignette("RLS, ferritin 30 366 days ago is stale -> order iron studies", [rls(), fx.ferritin(30, days_ago=366)], {"order-iron-studies"}),
    Vignette("RLS, ferritin exactly 50 -> start (at or below)", [rls(), fx.ferritin(50)], {"start-oral-iron"}),
    Vignette("RLS, ferritin 51 -> iron stores adequate", [rls(), fx.ferritin(51)], {"iron-stores-adequate"}, {"iron-stores-adequate": "info"}, check=detail_says("brain", code="iron-stores-adequate")),
    Vignette("RLS, ferritin 89.9 pmol/L (= 40 ug/L) -> start", [rls(), fx.ferritin(89.9, unit="pmol/L", ucum="pmol/L", loinc="14723-1")], {"start-oral-iron"}),
    Vignette("RLS, ferritin 89.9 pmol/L under mass code 2276-4 (UCUM governs) -> start", [rls(), fx.ferritin(89.9, unit="pmol/L", ucum="pmol/L")], {"start-oral-iron"}),
    Vignette("RLS, ferritin 130 pmol/L (= 57.9 ug/L) -> adequate", [rls(), fx.ferritin(130, unit="pmol/L", ucum="pmol/L", loinc="14723-1")], {"iron-stores-adequate"}),
    Vignette("RLS, ferritin 38 ug/L without UCUM code (alias) -> start", [rls(), fx.ferritin(38, unit="ug/L", ucum=None)], {"start-oral-iron"}),
    Vignette("RLS, ferritin 38 in an unknown unit -> unusable -> order iron studies", [rls(), fx.ferritin(38, unit="U/L", ucum="U/L")], {"order-iron-studies"}),
    Vignette("RLS, ferritin 38 preliminary only -> order iron studies", [rls(), fx.ferritin(38, status="preliminary")], {"order-iron-studies"}),
    Vignette("RLS, ferritin 38 dated in the future -> order iron studies", [rls(), fx.ferritin(38, days_ago=-3)], {"order-iron-studies"}),
    Vignette("RLS, ferritin goal 86914-9 is not a result -> order iron studies", [rls(), fx.ferritin(38, loinc="86914-9")], {"order-iron-studies"}),
    Vignette("RLS, old ferritin 30 then newer 70 -> latest wins -> adequate", [rls(), fx.ferritin(30, days_ago=200), fx.ferritin(70, days_ago=10)], {"iron-stores-adequate"}),
    Vignette("RLS, old ferritin 70 then newer 30 -> latest wins -> start", [rls(), fx.ferritin(70, days_ago=200), fx.ferritin(30, days_ago=10)], {"start-oral-iron"}),
    Vignette("RLS, ferritin 38 and TSAT 44 % -> start (below the 45 % ceiling)", [rls(), fx.ferritin(38), fx.tsat(44)], {"start-oral-iron"}),
    Vignette("RLS, IV iron 200 days ago (no longer recent), ferritin 30 -> start", [rls(), iv_infusion(200), fx.ferritin(30)], {"start-oral-iron"}),
    Vignette("RLS, IV iron order cancelled 90 days ago does not count -> start", [rls(), fx.medication_request("iron-sucrose", days_ago=90, status="cancelled"), fx.ferritin(30)], {"start-oral-iron"}),
    # --- on oral iron
    Vignette("On ferrous sulfate 10 days, ferritin 38 before starting -> continue, recheck", [rls(), oral_iron_statement(10), fx.ferritin(38, days_ago=20)], {"continue-oral-iron"}, {"continue-oral-iron": "info"}, check=continue_has_recheck),
    Vignette("On ferrous sulfate 27 days, ferritin 40 today -> trial not complete -> continue", [rls(), oral_iron_statement(27), fx.ferritin(40, days_ago=0)], {"continue-oral-iron"}),
    Vignette("On ferrous sulfate 35 days, ferritin 41 on day 30 -> escalate (a)", [rls(), oral_iron_statement(35), fx.ferritin(41, days_ago=5)], {"escalate-iv-iron"}, {"escalate-iv-iron": "warning"}, reasons="a", check=has_referral),
    Vignette("On ferrous sulfate 35 days, ferritin 41 exactly on day 28 -> escalate (a)", [rls(), oral_iron_statement(35), fx.ferritin(41, days_ago=7)], {"escalate-iv-iron"}, reasons="a"),
    Vignette("On ferrous sulfate 35 days, last ferritin before starting -> recheck due -> order iron studies", [rls(), oral_iron_statement(35), fx.ferritin(38, days_ago=40)], {"order-iron-studies"}),
    Vignette("On ferrous sulfate 35 days, ferritin 60 on day 30 -> adequate", [rls(), oral_iron_statement(35), fx.ferritin(60, days_ago=5)], {"iron-stores-adequate"}),
    Vignette("Renewed order: chain started 40 days ago, ferritin 40 five days ago -> escalate (a)", [rls(), PRIOR_ORDER, oral_iron_order(10, mid="mr-fs-renewal") | {"priorPrescription": {"reference": "MedicationRequest/mr-fs-first"}}, fx.ferritin(40, days_ago=5)], {"escalate-iv-iron"}, reasons="a"),
    Vignette("Active oral iron order with no start date counts from today -> continue", [rls(), {k: v for k, v in oral_iron_order(0).items() if k != "authoredOn"}, fx.ferritin(30, days_ago=20)], {"continue-oral-iron"}),
    # --- escalation reasons
    Vignette("51M RLS, Hb 118 g/L, ferritin 45 -> IDA -> escalate (d)", [man(), rls(), fx.hemoglobin(118, unit="g/L", ucum="g/L"), fx.ferritin(45)], {"escalate-iv-iron"}, reasons="d"),
    Vignette("51M RLS, Hb 13.0 g/dL (not anaemic), ferritin 45 -> start", [man(), rls(), fx.hemoglobin(13.0), fx.ferritin(45)], {"start-oral-iron"}),
    Vignette("62F RLS, Hb 11.9 g/dL, ferritin 45 -> escalate (d)", [woman(), rls(), fx.hemoglobin(11.9), fx.ferritin(45)], {"escalate-iv-iron"}, reasons="d"),
    Vignette("62F RLS, Hb 12.0 g/dL, ferritin 45 -> not anaemic -> start", [woman(), rls(), fx.hemoglobin(12.0), fx.ferritin(45)], {"start-oral-iron"}),
    Vignette("RLS, Hb 7.3 mmol/L (= 11.8 g/dL) in a woman, ferritin 45 -> escalate (d)", [woman(), rls(), fx.hemoglobin(7.3, unit="mmol/L", ucum="mmol/L", loinc="59260-0"), fx.ferritin(45)], {"escalate-iv-iron"}, reasons="d"),
    Vignette("RLS, Hb 10.5 but 100 days old (stale), ferritin 45 -> start", [woman(), rls(), fx.hemoglobin(10.5, days_ago=100), fx.ferritin(45)], {"start-oral-iron"}),
    Vignette("RLS with an IDA condition, ferritin 45 -> escalate (d)", [rls(), fx.condition("ida-icd"), fx.ferritin(45)], {"escalate-iv-iron"}, reasons="d"),
    Vignette("RLS, allergy to ferrous sulfate 325 mg (oral iron intolerance), ferritin 30 -> escalate (b)", [rls(), fx.allergy("ferrous-sulfate"), fx.ferritin(30)], {"escalate-iv-iron"}, reasons="b"),
    Vignette("RLS, refuted oral iron allergy, ferritin 30 -> start", [rls(), fx.allergy("ferrous-sulfate", verification="refuted"), fx.ferritin(30)], {"start-oral-iron"}),
    Vignette("RLS, coeliac disease, ferritin 30 -> escalate (c)", [rls(), fx.condition("celiac"), fx.ferritin(30)], {"escalate-iv-iron"}, reasons="c"),
    Vignette("RLS, bariatric surgery history, ferritin 30 -> escalate (c)", [rls(), fx.condition("bariatric"), fx.ferritin(30)], {"escalate-iv-iron"}, reasons="c"),
    Vignette("RLS, Crohn's disease resolved, ferritin 30 -> start", [rls(), fx.condition("crohns", clinical="resolved"), fx.ferritin(30)], {"start-oral-iron"}),
    Vignette("Iron sucrose 90 days ago, ferritin 30 taken 60 days after -> escalate (f)", [rls(), iv_infusion(90), fx.ferritin(30, days_ago=30)], {"escalate-iv-iron"}, reasons="f"),
    Vignette("Iron sucrose order completed 90 days ago, ferritin 30 taken 56 days after -> escalate (f)", [rls(), fx.medication_request("iron-sucrose", days_ago=90, status="completed"), fx.ferritin(30, days_ago=34)], {"escalate-iv-iron"}, reasons="f"),
    Vignette("Iron sucrose 90 days ago, ferritin 30 taken 55 days after -> still working, no iron card", [rls(), iv_infusion(90), fx.ferritin(30, days_ago=35)], set()),
    Vignette("Iron sucrose 90 days ago plus coeliac, ferritin 30 taken 30 days after -> no escalation within relief", [rls(), iv_infusion(90), fx.condition("celiac"), fx.ferritin(30, days_ago=60)], set()),
    Vignette("IV iron allergy, coeliac, ferritin 30 -> escalate without referral, names the allergy", [rls(), fx.allergy("iron-sucrose"), fx.condition("celiac"), fx.ferritin(30)], {"escalate-iv-iron"}, reasons="c", check=no_referral(("allerg", "specialist"))),
    # --- safety rules
    Vignette("Safety 1: not on iron, ferritin 38 with TSAT 50 % -> order iron studies (repeat morning draw)", [rls(), fx.ferritin(38), fx.tsat(50)], {"order-iron-studies"}, check=iron_studies_note),
    Vignette("Safety 1: not on iron, ferritin 350 -> iron stores adequate with the flag", [rls(), fx.ferritin(350)], {"iron-stores-adequate"}, check=detail_says("300", code="iron-stores-adequate")),
    Vignette("Safety 1: derived TSAT (iron 150 / TIBC 300 ug/dL = 50 %), ferritin 38, not on iron -> order iron studies", [rls(), fx.ferritin(38), fx.serum_iron(150), fx.tibc(300)], {"order-iron-studies"}),
    Vignette("Safety 1: derived TSAT in umol/L (26.9/53.7 = 50 %) on oral iron -> overload", [rls(), oral_iron_order(10), fx.ferritin(38), fx.serum_iron(26.9, unit="umol/L", ucum="umol/L"), fx.tibc(53.7, unit="umol/L", ucum="umol/L")], {"iron-overload-risk"}),
    Vignette("On oral iron order, ferritin 350 -> iron overload risk, delete the EHR order", [rls(), oral_iron_order(10), fx.ferritin(350)], {"iron-overload-risk"}, {"iron-overload-risk": "critical"}, check=both(deletes_only({"mr-fs-ehr"}), detail_says("24 h", code="iron-overload-risk"))),
    Vignette("On oral iron statement, TSAT 46 % -> iron overload risk", [rls(), oral_iron_statement(10), fx.ferritin(30), fx.tsat(46)], {"iron-overload-risk"}, {"iron-overload-risk": "critical"}),
    Vignette("Safety 2: hemochromatosis, not on iron, ferritin 30 -> no card", [rls(), fx.condition("hemochromatosis"), fx.ferritin(30)], set()),
    Vignette("Safety 2: hemochromatosis on oral iron order -> overload risk deleting that order", [rls(), fx.condition("hemochromatosis"), oral_iron_order(10), fx.ferritin(30)], {"iron-overload-risk"}, check=deletes_only({"mr-fs-ehr"})),
    Vignette("Safety 2: hemochromatosis, pregnant, on oral iron -> overload only (no pregnancy card)", [rls(), fx.condition("hemochromatosis"), fx.condition("pregnancy"), oral_iron_statement(10), fx.ferritin(30)], {"iron-overload-risk"}),
    Vignette("Safety 3: 12-year-old with RLS, ferritin 30 -> start without an adult-dose order", [fx.patient(birth_date=fx.birth_date_for_age(12)), rls(), fx.ferritin(30)], {"start-oral-iron"}, {"start-oral-iron": "warning"}, check=no_medication_request("start-oral-iron")),
    Vignette("Safety 3: partial birthDate year 2008 counts as 17 (younger age) -> no adult order", [fx.patient(birth_date="2008"), rls(), fx.ferritin(30)], {"start-oral-iron"}, check=no_medication_request("start-oral-iron")),
    Vignette("Safety 4: pregnant with coeliac, ferritin 30 -> escalate without referral + pregnancy needs", [rls(), fx.condition("pregnancy"), fx.condition("celiac"), fx.ferritin(30)], {"escalate-iv-iron", "pregnancy-iron-needs"}, {"pregnancy-iron-needs": "info"}, reasons="c", check=no_referral(("trimester", "obstetric"))),
    Vignette("Pregnant with RLS, ferritin 30 -> start + pregnancy iron needs (27 mg)", [rls(), fx.condition("pregnancy"), fx.ferritin(30)], {"start-oral-iron", "pregnancy-iron-needs"}, {"pregnancy-iron-needs": "info"}, check=detail_says("27 mg", code="pregnancy-iron-needs")),
    # --- companions
    Vignette("RLS on pramipexole, ferritin 40 -> start + add iron to dopamine agonist", [rls(), fx.medication_request("pramipexole"), fx.ferritin(40)], {"start-oral-iron", "add-iron-to-dopamine-agonist"}, {"add-iron-to-dopamine-agonist": "info"}),
    Vignette("RLS on ropinirole, ferritin 80 -> adequate only", [rls(), fx.medication_statement("ropinirole"), fx.ferritin(80)], {"iron-stores-adequate"}),
    Vignette("RLS on sertraline, ferritin 80 -> adequate + review aggravating medication", [rls(), fx.medication_request("sertraline"), fx.ferritin(80)], {"iron-stores-adequate", "review-aggravating-medication"}, {"review-aggravating-medication": "info"}, check=detail_says("sertraline", code="review-aggravating-medication")),
    Vignette("RLS on bupropion, ferritin 80 -> adequate only (bupropion does not worsen RLS)", [rls(), fx.medication_request("bupropion"), fx.ferritin(80)], {"iron-stores-adequate"}),
    Vignette("RLS on stopped sertraline, ferritin 80 -> adequate only", [rls(), fx.medication_request("sertraline", status="stopped"), fx.ferritin(80)], {"iron-stores-adequate"}),
    # --- no RLS
    Vignette("No RLS, IDA condition -> screen for RLS", [fx.condition("ida"), fx.ferritin(20)], {"screen-for-rls"}, {"screen-for-rls": "info"}, check=detail_says("the article states", code="screen-for-rls")),
    Vignette("No RLS, Hb 10 g/dL with ferritin 20 (IDA by labs) -> screen for RLS", [woman(), fx.hemoglobin(10.0), fx.ferritin(20)], {"screen-for-rls"}),
    Vignette("No RLS, ferritin 20 alone -> no card", [fx.ferritin(20)], set()),
    Vignette("No RLS, on oral iron with ferritin 400 -> overload risk only", [oral_iron_order(10), fx.ferritin(400)], {"iron-overload-risk"}),
    Vignette("RLS refuted, ferritin 30 -> no card", [fx.condition("rls", verification="refuted"), fx.ferritin(30)], set()),
    Vignette("RLS resolved, ferritin 30 -> no card", [fx.condition("rls", clinical="resolved"), fx.ferritin(30)], set()),
    Vignette("RLS in recurrence, ferritin 30 -> start", [fx.condition("rls", clinical="recurrence"), fx.ferritin(30)], {"start-oral-iron"}),
    Vignette("RLS recorded for another patient only -> no card", [fx.condition("rls", patient_id="other"), fx.ferritin(30)], set()),
]

# --- 3b: order-select and order-sign
ORDERS = [
    Vignette("order-select ferrous sulfate with ferritin 30 -> continue (not a second start)", [rls(), fx.ferritin(30)], {"continue-oral-iron"}, hook="order-select", drafts=[fx.draft_order("ferrous-sulfate", mid="d-fs")], check=continue_has_recheck),
    Vignette("order-select: selected draft is bupropion, unselected ferrous sulfate draft -> as if no draft (start)", [rls(), fx.ferritin(30)], {"start-oral-iron"}, hook="order-select", drafts=[fx.draft_order("bupropion", mid="d-bup"), fx.draft_order("ferrous-sulfate", mid="d-fs")], selections=["MedicationRequest/d-bup"]),
    Vignette("order-sign ferrous sulfate with no ferritin -> order iron studies (warning)", [rls()], {"order-iron-studies"}, {"order-iron-studies": "warning"}, hook="order-sign", drafts=[fx.draft_order("ferrous-sulfate", mid="d-fs")]),
    Vignette("order-sign pramipexole with no ferritin -> order iron studies (warning)", [rls()], {"order-iron-studies"}, {"order-iron-studies": "warning"}, hook="order-sign", drafts=[fx.draft_order("pramipexole", mid="d-pr")]),
    Vignette("order-sign sertraline (not iron) with no ferritin -> order iron studies (info) + review medication", [rls()], {"order-iron-studies", "review-aggravating-medication"}, {"order-iron-studies": "info"}, hook="order-sign", drafts=[fx.draft_order("sertraline", mid="d-se")]),
    Vignette("order-sign IV iron with TSAT 50 % -> overload risk critical, no delete of the draft", [rls(), fx.ferritin(38), fx.tsat(50)], {"iron-overload-risk"}, {"iron-overload-risk": "critical"}, hook="order-sign", drafts=[fx.draft_order("iron-sucrose", mid="d-iv")], check=deletes_only(set())),
    Vignette("order-sign ferrous sulfate while on EHR oral iron, ferritin 400 -> overload, deletes only the EHR order", [rls(), oral_iron_order(10), fx.ferritin(400)], {"iron-overload-risk"}, hook="order-sign", drafts=[fx.draft_order("ferrous-sulfate", mid="d-fs")], check=deletes_only({"mr-fs-ehr"})),
    Vignette("order-sign ferrous sulfate with oral iron intolerance, ferritin 30 -> escalate (b)", [rls(), fx.allergy("ferrous-sulfate"), fx.ferritin(30)], {"escalate-iv-iron"}, {"escalate-iv-iron": "warning"}, hook="order-sign", drafts=[fx.draft_order("ferrous-sulfate", mid="d-fs")], reasons="b"),
    Vignette("order-sign ferrous sulfate, coeliac, IV iron 60 days ago, ferritin 30 -> escalate (c) despite relief window", [rls(), fx.condition("celiac"), iv_infusion(60), fx.ferritin(30, days_ago=10)], {"escalate-iv-iron"}, hook="order-sign", drafts=[fx.draft_order("ferrous-sulfate", mid="d-fs")], reasons="c"),
    Vignette("order-sign ferrous sulfate with hemochromatosis -> overload critical, no delete", [rls(), fx.condition("hemochromatosis"), fx.ferritin(30)], {"iron-overload-risk"}, {"iron-overload-risk": "critical"}, hook="order-sign", drafts=[fx.draft_order("ferrous-sulfate", mid="d-fs")], check=deletes_only(set())),
    Vignette("order-sign IV iron in pregnancy, ferritin 30 -> pregnancy iron needs as a warning", [rls(), fx.condition("pregnancy"), fx.ferritin(30)], {"pregnancy-iron-needs"}, {"pregnancy-iron-needs": "warning"}, hook="order-sign", drafts=[fx.draft_order("ferric-carboxymaltose", mid="d-iv")], check=detail_says("trimester", code="pregnancy-iron-needs")),
    Vignette("order-select ferrous sulfate for a 10-year-old, ferritin 30 -> continue, no adult order", [fx.patient(birth_date=fx.birth_date_for_age(10)), rls(), fx.ferritin(30)], {"continue-oral-iron"}, hook="order-select", drafts=[fx.draft_order("ferrous-sulfate", mid="d-fs")]),
]


@pytest.mark.parametrize("vignette", params(ARTICLE))
def test_article_patient_view(vclient: TestClient, vignette: Vignette) -> None:
    run_vignette(vclient, "rls-iron", vignette)


@pytest.mark.parametrize("vignette", params(ORDERS))
def test_article_order_hooks(vclient: TestClient, vignette: Vignette) -> None:
    run_vignette(vclient, "rls-iron", vignette)


def test_every_outcome_is_covered() -> None:
    """The vignettes above exercise every outcome code and every article escalation reason."""
    seen = set().union(*(v.expect for v in ARTICLE + ORDERS))
    assert seen == {"order-iron-studies", "start-oral-iron", "continue-oral-iron", "escalate-iv-iron", "iron-stores-adequate", "iron-overload-risk", "screen-for-rls", "pregnancy-iron-needs", "add-iron-to-dopamine-agonist", "review-aggravating-medication"}
    assert set("".join(v.reasons for v in ARTICLE + ORDERS)) == set("abcdf")


# --- fine points of the specification's facts (dates, ties, units, thresholds, matching) ----------------------

def _with(resource: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = dict(resource)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def _child(age: int, gender: str = "female") -> dict[str, Any]:
    return fx.patient(gender=gender, birth_date=fx.birth_date_for_age(age))


def _infant(months: int) -> dict[str, Any]:
    d = DEFAULT_NOW.date()
    total = d.year * 12 + d.month - 1 - months
    return fx.patient(birth_date=f"{total // 12:04d}-{total % 12 + 1:02d}-01")


def _named(kind_text: str, code: str = "999999", system: str = fx.RXNORM) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": kind_text}], "text": kind_text}


FINE = [
    Vignette("Tie on date: the later-issued ferritin (70) wins over 30 -> adequate", [rls(), fx.ferritin(30, days_ago=10, issued_days_ago=10, oid="f-b"), fx.ferritin(70, days_ago=10, issued_days_ago=9, oid="f-a")], {"iron-stores-adequate"}),
    Vignette("Tie on date and issued: the greatest id wins (f-b = 30) -> start", [rls(), fx.ferritin(70, days_ago=10, oid="f-a"), fx.ferritin(30, days_ago=10, oid="f-b")], {"start-oral-iron"}),
    Vignette("Tie on date: a ferritin without issued sorts first (the issued one, 30, wins)", [rls(), _with(fx.ferritin(70, days_ago=10, oid="f-z"), issued=None), fx.ferritin(30, days_ago=10, oid="f-a")], {"start-oral-iron"}),
    Vignette("Ferritin dated by effectivePeriod.start is usable -> start", [rls(), _with(fx.ferritin(30), effectiveDateTime=None, effectivePeriod={"start": fx.instant(12)})], {"start-oral-iron"}),
    Vignette("Ferritin with a partial date 2026-11 counts from its first day (current) -> start", [rls(), _with(fx.ferritin(30), effectiveDateTime="2026-11")], {"start-oral-iron"}),
    Vignette("Ferritin with no effective date at all is unusable -> order iron studies", [rls(), _with(fx.ferritin(30), effectiveDateTime=None)], {"order-iron-studies"}),
    Vignette("UCUM code pmol/L governs over free-text 'ng/mL' (89.9 pmol/L = 40) -> start", [rls(), fx.ferritin(89.9, unit="ng/mL", ucum="pmol/L")], {"start-oral-iron"}),
    Vignette("Free-text unit 'µg/L' without UCUM code is an accepted alias -> start", [rls(), fx.ferritin(30, unit="µg/L", ucum=None)], {"start-oral-iron"}),
    Vignette("Free-text unit 'nanograms per ml' is not in the alias list -> order iron studies", [rls(), fx.ferritin(30, unit="nanograms per ml", ucum=None)], {"order-iron-studies"}),
    Vignette("Same-day measured TSAT (30 %) beats a derived one (50 %) -> start, not studies", [rls(), fx.ferritin(38), fx.tsat(30, days_ago=5), fx.serum_iron(150, days_ago=5), fx.tibc(300, days_ago=5)], {"start-oral-iron"}),
    Vignette("Derived TSAT from mixed units (iron 26.9 umol/L, TIBC 300 ug/dL = 50 %) -> studies", [rls(), fx.ferritin(38), fx.serum_iron(26.9, unit="umol/L", ucum="umol/L"), fx.tibc(300)], {"order-iron-studies"}),
    Vignette("Iron in mg/L gives no derived TSAT -> start", [rls(), fx.ferritin(38), fx.serum_iron(1.5, unit="mg/L", ucum="mg/L"), fx.tibc(300)], {"start-oral-iron"}),
    Vignette("Iron and TIBC drawn on different days give no derived TSAT -> start", [rls(), fx.ferritin(38), fx.serum_iron(150, days_ago=5), fx.tibc(300, days_ago=6)], {"start-oral-iron"}),
    Vignette("TSAT exactly 45 % not on iron, ferritin 38 -> studies (>= 45)", [rls(), fx.ferritin(38), fx.tsat(45)], {"order-iron-studies"}),
    Vignette("Not on iron, ferritin 80, TSAT 50 % -> adequate with the TSAT flag", [rls(), fx.ferritin(80), fx.tsat(50)], {"iron-stores-adequate"}, check=detail_says("45", code="iron-stores-adequate")),
    Vignette("On oral iron 10 days, ferritin 300 (not above 300) -> adequate, no overload", [rls(), oral_iron_statement(10), fx.ferritin(300)], {"iron-stores-adequate"}),
    Vignette("On oral iron 10 days, ferritin 301 -> overload", [rls(), oral_iron_statement(10), fx.ferritin(301)], {"iron-overload-risk"}),
    # hemoglobin thresholds
    Vignette("Same day Hb: 718-7 (11.0) preferred over 20509-6 (13.0) in a woman -> IDA -> escalate (d)", [woman(), rls(), fx.hemoglobin(11.0, days_ago=5, oid="hb-a"), fx.hemoglobin(13.0, days_ago=5, loinc="20509-6", oid="hb-z"), fx.ferritin(45)], {"escalate-iv-iron"}, reasons="d"),
    Vignette("Sex 'other', Hb 12.5 -> 12.0 threshold, not anaemic -> start", [fx.patient(gender="other"), rls(), fx.hemoglobin(12.5), fx.ferritin(45)], {"start-oral-iron"}),
    Vignette("Sex missing, Hb 11.9 -> anaemic at 12.0 -> escalate (d)", [fx.patient(gender=None), rls(), fx.hemoglobin(11.9), fx.ferritin(45)], {"escalate-iv-iron"}, reasons="d"),
    Vignette("Pregnant, Hb 11.5 -> threshold 11.0, not anaemic -> start + pregnancy", [woman(30), rls(), fx.condition("pregnancy"), fx.hemoglobin(11.5), fx.ferritin(45)], {"start-oral-iron", "pregnancy-iron-needs"}),
    Vignette("Pregnant, Hb 10.9 -> anaemic -> escalate (d) without referral + pregnancy", [woman(30), rls(), fx.condition("pregnancy"), fx.hemoglobin(10.9), fx.ferritin(45)], {"escalate-iv-iron", "pregnancy-iron-needs"}, reasons="d", check=no_referral(("trimester",))),
    Vignette("Refuted pregnancy, Hb 11.5 -> non-pregnant threshold 12.0, anaemic -> escalate (d), no pregnancy card", [woman(30), rls(), fx.condition("pregnancy", verification="refuted"), fx.hemoglobin(11.5), fx.ferritin(45)], {"escalate-iv-iron"}, reasons="d"),
    Vignette("Resolved pregnancy, Hb 11.5 -> threshold 12.0, anaemic -> escalate (d)", [woman(30), rls(), fx.condition("pregnancy", clinical="resolved"), fx.hemoglobin(11.5), fx.ferritin(45)], {"escalate-iv-iron"}, reasons="d", check=has_referral),
    Vignette("Boy aged 14, Hb 12.5 -> threshold 12.0, not anaemic -> start", [_child(14, "male"), rls(), fx.hemoglobin(12.5), fx.ferritin(30)], {"start-oral-iron"}, check=no_medication_request("start-oral-iron")),
    Vignette("Boy aged 15, Hb 12.5 -> threshold 13.0, anaemic -> escalate (d)", [_child(15, "male"), rls(), fx.hemoglobin(12.5), fx.ferritin(30)], {"escalate-iv-iron"}, reasons="d"),
    Vignette("Child aged 8, Hb 11.4 -> threshold 11.5, anaemic -> escalate (d)", [_child(8), rls(), fx.hemoglobin(11.4), fx.ferritin(30)], {"escalate-iv-iron"}, reasons="d"),
    Vignette("Child aged 3, Hb 11.2 -> threshold 11.0, not anaemic -> start (no adult dose)", [_child(3), rls(), fx.hemoglobin(11.2), fx.ferritin(30)], {"start-oral-iron"}, check=no_medication_request("start-oral-iron")),
    Vignette("Infant 4 months, Hb 9.0 -> no anemia fact under 6 months -> start (no adult dose)", [_infant(4), rls(), fx.hemoglobin(9.0), fx.ferritin(30)], {"start-oral-iron"}, check=no_medication_request("start-oral-iron")),
    Vignette("Infant 10 months, Hb 10.4 -> threshold 10.5, anaemic -> escalate (d)", [_infant(10), rls(), fx.hemoglobin(10.4), fx.ferritin(30)], {"escalate-iv-iron"}, reasons="d"),
    # oral iron course
    Vignette("Oral iron statement with no start date counts from today -> continue", [rls(), _with(oral_iron_statement(0), effectivePeriod=None), fx.ferritin(30, days_ago=20)], {"continue-oral-iron"}),
    Vignette("Oral iron order on hold is not active -> start", [rls(), fx.medication_request("ferrous-sulfate", days_ago=40, status="on-hold"), fx.ferritin(30)], {"start-oral-iron"}),
    Vignette("Earliest start among statement (40 d) and order (5 d): ferritin 40 at day 35 -> escalate (a)", [rls(), oral_iron_statement(40), oral_iron_order(5), fx.ferritin(40, days_ago=5)], {"escalate-iv-iron"}, reasons="a"),
    Vignette("validityPeriod.start (40 d) beats authoredOn (5 d): ferritin 40 at day 35 -> escalate (a)", [rls(), _with(oral_iron_order(5), dispenseRequest={"validityPeriod": {"start": fx.day(40)}}), fx.ferritin(40, days_ago=5)], {"escalate-iv-iron"}, reasons="a"),
    Vignette("Oral iron coded ATC B03AA07 only -> on oral iron 10 days -> continue", [rls(), fx.medication_statement("ferrous-sulfate", days_ago=10, medicationCodeableConcept=fx.concept(fx.ATC, "B03AA07", "ferrous sulfate")), fx.ferritin(30)], {"continue-oral-iron"}),
    Vignette("Oral iron known only by name ('Ferrous sulfate 325 mg tab', unknown code) -> continue", [rls(), fx.medication_statement("ferrous-sulfate", days_ago=10, medicationCodeableConcept=_named("Ferrous sulfate 325 mg tab")), fx.ferritin(30)], {"continue-oral-iron"}),
    Vignette("Sertraline code with a misleading 'ferrous sulfate' display: the code wins -> start + review", [rls(), fx.medication_request("sertraline", medicationCodeableConcept=_named("ferrous sulfate", code="36437")), fx.ferritin(30)], {"start-oral-iron", "review-aggravating-medication"}),
    Vignette("Oral iron via medicationReference to a contained Medication -> continue", [rls(), _with(fx.medication_request("ferrous-sulfate", days_ago=10), medicationCodeableConcept=None, medicationReference={"reference": "#med1"}, contained=[{"resourceType": "Medication", "id": "med1", "code": fx.medication_concept("ferrous-sulfate")}]), fx.ferritin(30)], {"continue-oral-iron"}),
    # IV iron windows
    Vignette("IV iron exactly 183 days ago is still recent: ferritin 30 taken 83 days after -> escalate (f), no start", [rls(), iv_infusion(183), fx.ferritin(30, days_ago=100)], {"escalate-iv-iron"}, reasons="f"),
    Vignette("IV iron 184 days ago is not recent -> start", [rls(), iv_infusion(184), fx.ferritin(30, days_ago=10)], {"start-oral-iron"}),
    Vignette("IV iron 100 days ago, ferritin 30 exactly 56 days after -> escalate (f)", [rls(), iv_infusion(100), fx.ferritin(30, days_ago=44)], {"escalate-iv-iron"}, reasons="f"),
    Vignette("IV iron administration not-done does not count -> start", [rls(), fx.medication_administration("iron-sucrose", days_ago=30, status="not-done"), fx.ferritin(30)], {"start-oral-iron"}),
    Vignette("IV iron in progress today counts as recent -> no iron card", [rls(), fx.medication_administration("ferric-carboxymaltose", days_ago=0, status="in-progress"), fx.ferritin(30)], set()),
    Vignette("IV iron coded ATC B03AC only, 30 days ago -> recent -> no iron card", [rls(), fx.medication_administration("iron-sucrose", days_ago=30, medicationCodeableConcept=fx.concept(fx.ATC, "B03AC", "iron, parenteral preparations")), fx.ferritin(30)], set()),
    Vignette("IV iron statement completed 60 days ago, ferritin 30 today -> escalate (f)", [rls(), fx.medication_statement("ferric-carboxymaltose", days_ago=60, status="completed"), fx.ferritin(30, days_ago=0)], {"escalate-iv-iron"}, reasons="f"),
    # precedence
    Vignette("Pregnant on oral iron with ferritin 350 -> overload only (no pregnancy card)", [woman(30), rls(), fx.condition("pregnancy"), oral_iron_statement(10), fx.ferritin(350)], {"iron-overload-risk"}),
    Vignette("On pramipexole with TSAT 50 % and ferritin 30, not on iron -> studies only (no dopamine-agonist iron card)", [rls(), fx.medication_request("pramipexole"), fx.ferritin(30), fx.tsat(50)], {"order-iron-studies"}),
    Vignette("order-sign ropinirole with ferritin 30 -> start + add iron to dopamine agonist", [rls(), fx.ferritin(30)], {"start-oral-iron", "add-iron-to-dopamine-agonist"}, hook="order-sign", drafts=[fx.draft_order("ropinirole", mid="d-ro")]),
    Vignette("No RLS, on oral iron, hemochromatosis -> overload risk only", [fx.condition("hemochromatosis"), oral_iron_order(10), fx.ferritin(30)], {"iron-overload-risk"}),
    Vignette("No RLS, IDA and overload on oral iron -> screen + overload", [fx.condition("ida"), oral_iron_order(10), fx.ferritin(400)], {"screen-for-rls", "iron-overload-risk"}),
]


@pytest.mark.parametrize("vignette", params(FINE))
def test_article_fine_points(vclient: TestClient, vignette: Vignette) -> None:
    run_vignette(vclient, "rls-iron", vignette)


def reasons_exactly(expected: str) -> Callable[[dict[str, dict[str, Any]]], None]:
    """The escalate detail names these reasons and no other (a)-(f) as applied."""
    def check(cards: dict[str, dict[str, Any]]) -> None:
        detail = cards["escalate-iv-iron"]["detail"]
        named = {r for r in "abcdef" if f"- ({r})" in detail}
        assert named == set(expected), f"reasons named {sorted(named)}, expected {sorted(expected)}"
    return check


FINE2 = [
    Vignette("Ferritin at 23:30 local (-05:00) today is tomorrow in UTC -> future -> studies", [rls(), _with(fx.ferritin(30), effectiveDateTime="2026-11-26T23:30:00-05:00")], {"order-iron-studies"}),
    Vignette("Ferritin 365 days ago local but 366 in UTC (+05:00, 01:00) -> stale -> studies", [rls(), _with(fx.ferritin(30), effectiveDateTime="2025-11-26T01:00:00+05:00")], {"order-iron-studies"}),
    Vignette("18th birthday today: adult, ferrous sulfate order suggested", [fx.patient(birth_date="2008-11-26"), rls(), fx.ferritin(30)], {"start-oral-iron"}, check=start_has_ferrous_sulfate_and_recheck),
    Vignette("18th birthday tomorrow: still 17, no adult order", [fx.patient(birth_date="2008-11-27"), rls(), fx.ferritin(30)], {"start-oral-iron"}, check=no_medication_request("start-oral-iron")),
    Vignette("Partial birthDate 2008-11 counts from 2008-11-30 (17) -> no adult order", [fx.patient(birth_date="2008-11"), rls(), fx.ferritin(30)], {"start-oral-iron"}, check=no_medication_request("start-oral-iron")),
    Vignette("Ferritin reported as text '<5' (no quantity) is unusable -> studies", [rls(), _with(fx.ferritin(5), valueQuantity=None, valueString="<5")], {"order-iron-studies"}),
    Vignette("Older TSAT 50 %, newer TSAT 30 % -> latest is normal -> start", [rls(), fx.ferritin(30), fx.tsat(50, days_ago=40), fx.tsat(30, days_ago=5)], {"start-oral-iron"}),
    Vignette("Older ferritin 350, newer ferritin 30 -> latest is low -> start", [rls(), fx.ferritin(350, days_ago=200), fx.ferritin(30, days_ago=5)], {"start-oral-iron"}),
    Vignette("TSAT 50 % taken 91 days ago is not current -> start", [rls(), fx.ferritin(30), fx.tsat(50, days_ago=91)], {"start-oral-iron"}),
    Vignette("Two RLS conditions, one refuted and one active -> RLS -> start", [fx.condition("rls", verification="refuted"), fx.condition("rls-icd"), fx.ferritin(30)], {"start-oral-iron"}),
    Vignette("On oral iron 35 days, ferritin 41 on day 30, coeliac -> escalate naming (a) and (c)", [rls(), oral_iron_statement(35), fx.condition("celiac"), fx.ferritin(41, days_ago=5)], {"escalate-iv-iron"}, reasons="ac", check=reasons_exactly("ac")),
    Vignette("Recent IV iron plus coeliac, ferritin 30 taken 60 days after -> escalate (f) only", [rls(), iv_infusion(90), fx.condition("celiac"), fx.ferritin(30, days_ago=30)], {"escalate-iv-iron"}, reasons="f", check=reasons_exactly("f")),
    Vignette("order-sign ferrous sulfate, no ferritin, TSAT 50 % -> overload (draft counts), no delete", [rls(), fx.tsat(50)], {"iron-overload-risk"}, {"iron-overload-risk": "critical"}, hook="order-sign", drafts=[fx.draft_order("ferrous-sulfate", mid="d-fs")], check=deletes_only(set())),
    Vignette("order-select IV iron in pregnancy -> pregnancy iron needs (warning)", [woman(30), rls(), fx.condition("pregnancy"), fx.ferritin(30)], {"pregnancy-iron-needs"}, {"pregnancy-iron-needs": "warning"}, hook="order-select", drafts=[fx.draft_order("iron-sucrose", mid="d-iv")]),
    Vignette("order-select oral iron in pregnancy -> continue + pregnancy iron needs (info)", [woman(30), rls(), fx.condition("pregnancy"), fx.ferritin(30)], {"continue-oral-iron", "pregnancy-iron-needs"}, {"pregnancy-iron-needs": "info"}, hook="order-select", drafts=[fx.draft_order("ferrous-sulfate", mid="d-fs")]),
    Vignette("order-sign ferrous sulfate for another patient's draft is ignored -> start", [rls(), fx.ferritin(30)], {"start-oral-iron"}, hook="order-sign", drafts=[fx.draft_order("ferrous-sulfate", mid="d-fs", patient_id="other")]),
    Vignette("order-select naming no draft of the context -> as if no draft -> start", [rls(), fx.ferritin(30)], {"start-oral-iron"}, hook="order-select", drafts=[fx.draft_order("ferrous-sulfate", mid="d-fs")], selections=["MedicationRequest/not-here"]),
    Vignette("order-sign ferrous sulfate for a 12-year-old on EHR iron with ferritin 400 -> overload deleting the EHR order", [_child(12), rls(), oral_iron_order(10), fx.ferritin(400)], {"iron-overload-risk"}, hook="order-sign", drafts=[fx.draft_order("ferrous-sulfate", mid="d-fs")], check=deletes_only({"mr-fs-ehr"})),
    Vignette("Metoclopramide known by name only -> review aggravating medication", [rls(), fx.medication_request("sertraline", medicationCodeableConcept=_named("metoclopramide 10 MG Oral Tablet", code="311666000")), fx.ferritin(80)], {"iron-stores-adequate", "review-aggravating-medication"}),
    Vignette("Hemoglobin 120 labelled g/dL is implausible (never guessed) -> ferritin 45 -> start", [woman(), rls(), fx.hemoglobin(120), fx.ferritin(45)], {"start-oral-iron"}),
]


@pytest.mark.parametrize("vignette", params(FINE2))
def test_article_more_fine_points(vclient: TestClient, vignette: Vignette) -> None:
    run_vignette(vclient, "rls-iron", vignette)


def _icd(code: str, display: str, **kw: Any) -> dict[str, Any]:
    return fx.condition("rls", code={"coding": [{"system": fx.ICD10, "code": code, "display": display}], "text": display}, **kw)


FINE3 = [
    Vignette("Derived TSAT 50 % stands next to a preliminary same-day TSAT (unusable) -> studies", [rls(), fx.ferritin(38), fx.serum_iron(150, days_ago=0), fx.tibc(300, days_ago=0), fx.tsat(20, days_ago=0, status="preliminary")], {"order-iron-studies"}),
    Vignette("order-sign ferrous sulfate while on EHR oral iron for 40 days, ferritin 40 on day 35 -> escalate (a)", [rls(), oral_iron_statement(40), fx.ferritin(40, days_ago=5)], {"escalate-iv-iron"}, hook="order-sign", drafts=[fx.draft_order("ferrous-sulfate", mid="d-fs")], reasons="a"),
    # Clinically cautious reading of (f): "a ferritin taken 56 days or more after the infusion" is judged against the
    # latest infusion; a ferritin drawn before a repeat course 10 days ago does not call for yet another course.
    # Spec 3, escalate-iv-iron: "(f) recent IV iron, and a ferritin taken 56 days or more after the infusion is still
    # <= ferritin_low". The card itself says "IV iron 10 days ago" yet claims the ferritin was 56+ days after IV iron.
    Vignette("IV iron 150 and 10 days ago, ferritin 30 drawn 20 days ago (before the repeat) -> no escalation", [rls(), iv_infusion(150), iv_infusion(10), fx.ferritin(30, days_ago=20)], set()),
    Vignette("Pregnant, recent IV iron, ferritin 30 taken 60 days after -> escalate (f) without referral", [woman(30), rls(), fx.condition("pregnancy"), iv_infusion(90), fx.ferritin(30, days_ago=30)], {"escalate-iv-iron", "pregnancy-iron-needs"}, reasons="f", check=no_referral(("obstetric",))),
    Vignette("Unconfirmed but active oral iron allergy still counts -> escalate (b)", [rls(), fx.allergy("ferrous-sulfate", verification="unconfirmed"), fx.ferritin(30)], {"escalate-iv-iron"}, reasons="b"),
    Vignette("Inactive oral iron allergy does not count -> start", [rls(), fx.allergy("ferrous-sulfate", clinical="inactive"), fx.ferritin(30)], {"start-oral-iron"}),
    Vignette("IDA coded D50.0 -> escalate (d)", [rls(), _icd("D50.0", "Iron deficiency anemia secondary to blood loss (chronic)"), fx.ferritin(45)], {"escalate-iv-iron"}, reasons="d"),
    Vignette("Crohn's coded K50.10 -> escalate (c)", [rls(), _icd("K50.10", "Crohn's disease of large intestine without complications"), fx.ferritin(45)], {"escalate-iv-iron"}, reasons="c"),
    Vignette("Ulcerative colitis coded K51.90 -> escalate (c)", [rls(), _icd("K51.90", "Ulcerative colitis, unspecified, without complications"), fx.ferritin(45)], {"escalate-iv-iron"}, reasons="c"),
    Vignette("Malabsorption K90.9 -> escalate (c)", [rls(), _icd("K90.9", "Intestinal malabsorption, unspecified"), fx.ferritin(45)], {"escalate-iv-iron"}, reasons="c"),
    Vignette("Hemochromatosis E83.119 with oral iron -> overload", [rls(), _icd("E83.119", "Hemochromatosis, unspecified"), oral_iron_statement(10), fx.ferritin(45)], {"iron-overload-risk"}),
    Vignette("Hemochromatosis parent code E83.11 not on iron -> no card", [rls(), _icd("E83.11", "Hemochromatosis"), fx.ferritin(45)], set()),
    Vignette("Pregnancy coded Z33.1 -> start + pregnancy", [rls(), _icd("Z33.1", "Pregnant state, incidental"), fx.ferritin(45)], {"start-oral-iron", "pregnancy-iron-needs"}),
    Vignette("Ferritin LOINC 24373-3 (blood) -> usable -> start", [rls(), fx.ferritin(30, loinc="24373-3")], {"start-oral-iron"}),
    Vignette("Ferritin LOINC 20567-4 -> usable -> start", [rls(), fx.ferritin(30, loinc="20567-4")], {"start-oral-iron"}),
    Vignette("TSAT LOINC 14801-5 at 50 % with oral iron -> overload", [rls(), oral_iron_statement(10), fx.ferritin(30), fx.tsat(50, loinc="14801-5")], {"iron-overload-risk"}),
    Vignette("Hb 6.8 mmol/L under 75928-2 (= 10.95 g/dL) in a woman -> escalate (d)", [woman(), rls(), fx.hemoglobin(6.8, unit="mmol/L", ucum="mmol/L", loinc="75928-2"), fx.ferritin(45)], {"escalate-iv-iron"}, reasons="d"),
    Vignette("order-sign IV iron and oral iron together, ferritin 30 -> no start/continue/escalate (IV iron being given)", [rls(), fx.ferritin(30)], set(), hook="order-sign", drafts=[fx.draft_order("ferrous-sulfate", mid="d-fs"), fx.draft_order("iron-sucrose", mid="d-iv")]),
]


@pytest.mark.parametrize("vignette", params(FINE3))
def test_article_coding_and_edge_cases(vclient: TestClient, vignette: Vignette) -> None:
    run_vignette(vclient, "rls-iron", vignette)


FINE4 = [
    Vignette("order-sign draft ferrous sulfate via contained Medication, ferritin 30 -> continue", [rls(), fx.ferritin(30)], {"continue-oral-iron"}, hook="order-sign",
             drafts=[_with(fx.draft_order("ferrous-sulfate", mid="d-fs"), medicationCodeableConcept=None, medicationReference={"reference": "#m1"}, contained=[{"resourceType": "Medication", "id": "m1", "code": fx.medication_concept("ferrous-sulfate")}])]),
    Vignette("order-select pramipexole with no ferritin -> order iron studies (warning)", [rls()], {"order-iron-studies"}, {"order-iron-studies": "warning"}, hook="order-select", drafts=[fx.draft_order("pramipexole", mid="d-pr")]),
    Vignette("order-sign IV iron in pregnancy with hemochromatosis -> overload only, no delete", [woman(30), rls(), fx.condition("pregnancy"), fx.condition("hemochromatosis"), fx.ferritin(30)], {"iron-overload-risk"}, hook="order-sign", drafts=[fx.draft_order("iron-sucrose", mid="d-iv")], check=deletes_only(set())),
    Vignette("EHR ferrous sulfate order still in draft status is not active -> start", [rls(), fx.medication_request("ferrous-sulfate", status="draft", mid="ehr-draft"), fx.ferritin(30)], {"start-oral-iron"}),
    Vignette("Oral iron statement 'intended' is not active -> start", [rls(), fx.medication_statement("ferrous-sulfate", days_ago=10, status="intended"), fx.ferritin(30)], {"start-oral-iron"}),
    Vignette("Oral iron administration does not make a patient on oral iron -> start", [rls(), fx.medication_administration("ferrous-sulfate", days_ago=10), fx.ferritin(30)], {"start-oral-iron"}),
    Vignette("Recent IV iron by a completed order, TSAT 50 % -> overload without deleting the completed order", [rls(), fx.medication_request("iron-sucrose", days_ago=30, status="completed", mid="mr-iv-done"), fx.ferritin(30), fx.tsat(50)], {"iron-overload-risk"}, check=deletes_only(set())),
    Vignette("Active IV iron order 30 days ago, ferritin 400 -> overload deleting that order", [rls(), fx.medication_request("iron-sucrose", days_ago=30, mid="mr-iv-active"), fx.ferritin(400)], {"iron-overload-risk"}, check=deletes_only({"mr-iv-active"})),
]


@pytest.mark.parametrize("vignette", params(FINE4))
def test_article_orders_and_statuses(vclient: TestClient, vignette: Vignette) -> None:
    run_vignette(vclient, "rls-iron", vignette)


def test_discovery_lists_every_profile_and_hook(vclient: TestClient) -> None:
    """A real CDS Hooks client starts from discovery: six services, each with the prefetch the fixtures fill."""
    services = {s["id"]: s for s in vclient.get("/cds-services").json()["services"]}
    for prefix in ("rls-iron", "rls-iron-aasm2024"):
        for hook in ("patient-view", "order-select", "order-sign"):
            assert services[f"{prefix}-{hook}"]["hook"] == hook
            assert set(fx.SEARCH_KEY_BY_TYPE.values()) <= set(services[f"{prefix}-{hook}"]["prefetch"])


def test_searchset_with_full_urls_and_an_operation_outcome_entry(vclient: TestClient) -> None:
    """An EHR's searchset carries fullUrls, search modes and an OperationOutcome warning entry: same answer as plain."""
    request = fx.cds_request([rls(), fx.ferritin(38, days_ago=14)])
    labs, _ = fx.full_url_bundle([fx.ferritin(38, days_ago=14)], style="absolute")
    for entry in labs["entry"]:
        entry["search"] = {"mode": "match"}
    labs["entry"].append({"resource": {"resourceType": "OperationOutcome", "issue": [{"severity": "warning", "code": "informational", "diagnostics": "some results suppressed"}]}, "search": {"mode": "outcome"}})
    request["prefetch"]["labs"] = labs
    response = vclient.post("/cds-services/rls-iron-patient-view", json=request)
    assert response.status_code == 200, response.text
    assert [c["source"]["topic"]["code"] for c in response.json()["cards"]] == ["start-oral-iron"]


UNITS = [
    Vignette("Oral iron started '2026-10' (partial: from 2026-10-01, 56 days), ferritin 40 ten days ago -> escalate (a)", [rls(), _with(oral_iron_statement(0), effectivePeriod={"start": "2026-10"}), fx.ferritin(40, days_ago=10)], {"escalate-iv-iron"}, reasons="a"),
    Vignette("IV iron given '2026-06' (partial: 178 days), ferritin 30 taken 78 days after -> escalate (f)", [rls(), _with(iv_infusion(0), effectiveDateTime="2026-06"), fx.ferritin(30, days_ago=100)], {"escalate-iv-iron"}, reasons="f"),
    # the specification's facts: usable with "a numeric valueQuantity in a unit convertible to ug/L"; mg/L is a UCUM mass
    # concentration (0.03 mg/L = 30 ug/L). Reading it as unusable gives order-iron-studies instead of start.
    Vignette("Ferritin 0.03 mg/L (UCUM, = 30 ug/L) -> start", [rls(), fx.ferritin(0.03, unit="mg/L", ucum="mg/L")], {"start-oral-iron"}),
    # the specification's facts, TSAT: "canonical unit %"; UCUM "1" (a fraction) converts to % (x100). A TSAT of 0.50 reported as
    # a fraction is then 50 %: safety rule 1 applies (not on iron -> order-iron-studies, not start-oral-iron).
    Vignette("TSAT 0.50 in UCUM '1' (= 50 %), ferritin 38, not on iron -> studies (safety rule 1)", [rls(), fx.ferritin(38), _with(fx.tsat(50), valueQuantity={"value": 0.5, "unit": "1", "system": fx.UCUM, "code": "1"})], {"order-iron-studies"}),
]


@pytest.mark.parametrize("vignette", params(UNITS))
def test_article_partial_dates_and_convertible_units(vclient: TestClient, vignette: Vignette) -> None:
    run_vignette(vclient, "rls-iron", vignette)


def window_named(code: str, first: str, last: str) -> Callable[[dict[str, dict[str, Any]]], None]:
    """The ferritin recheck ServiceRequest of `code` falls in the profile's window after the start of the course."""
    def check(cards: dict[str, dict[str, Any]]) -> None:
        text = repr(created(cards[code], "ServiceRequest"))
        assert first in text and last in text, f"{code} recheck window {first}..{last} not in {text[:300]}"
    return check


WINDOWS = [
    Vignette("Start today -> recheck 2026-12-24 to 2027-01-07 (28-42 days)", [rls(), fx.ferritin(30)], {"start-oral-iron"}, check=window_named("start-oral-iron", "2026-12-24", "2027-01-07")),
    Vignette("On ferrous sulfate since 2026-11-16 -> recheck 2026-12-14 to 2026-12-28", [rls(), oral_iron_statement(10), fx.ferritin(30, days_ago=20)], {"continue-oral-iron"}, check=window_named("continue-oral-iron", "2026-12-14", "2026-12-28")),
    Vignette("order-select ferrous sulfate starts today -> recheck 2026-12-24 to 2027-01-07", [rls(), fx.ferritin(30)], {"continue-oral-iron"}, hook="order-select", drafts=[fx.draft_order("ferrous-sulfate", mid="d-fs")], check=window_named("continue-oral-iron", "2026-12-24", "2027-01-07")),
]


@pytest.mark.parametrize("vignette", params(WINDOWS))
def test_article_recheck_windows(vclient: TestClient, vignette: Vignette) -> None:
    run_vignette(vclient, "rls-iron", vignette)


def _censored(value: float, comparator: str, **kw: Any) -> dict[str, Any]:
    """A ferritin outside the assay range, as labs report it: valueQuantity with a comparator."""
    return _with(fx.ferritin(value, **kw), valueQuantity={"value": value, "comparator": comparator, "unit": "ng/mL", "system": fx.UCUM, "code": "ng/mL"})


CENSORED = [
    # the specification's facts: usable with "a numeric valueQuantity"; ">1000 ng/mL" is numeric and certainly above the 300 ug/L
    # ceiling, so reading it is not a guess. Clinically cautious: iron-overload-risk must not be missed.
    Vignette("On oral iron, ferritin reported '>1000 ng/mL' -> iron overload risk", [rls(), oral_iron_order(10), _censored(1000, ">")], {"iron-overload-risk"}),
    Vignette("Ferritin reported '<5 ng/mL', not on iron -> start", [rls(), _censored(5, "<")], {"start-oral-iron"}),
]


@pytest.mark.parametrize("vignette", params(CENSORED))
def test_article_censored_results(vclient: TestClient, vignette: Vignette) -> None:
    run_vignette(vclient, "rls-iron", vignette)


NAMES = [
    Vignette("Ferric maltol known by name only, 10 days -> on oral iron -> continue", [rls(), fx.medication_statement("ferrous-sulfate", days_ago=10, medicationCodeableConcept=_named("Ferric maltol 30 MG Oral Capsule")), fx.ferritin(30)], {"continue-oral-iron"}),
    Vignette("Polysaccharide-iron complex by name only, 10 days -> continue", [rls(), fx.medication_statement("ferrous-sulfate", days_ago=10, medicationCodeableConcept=_named("Polysaccharide-iron complex 150 MG Oral Capsule")), fx.ferritin(30)], {"continue-oral-iron"}),
    Vignette("Ferumoxytol by name only, infused 30 days ago -> recent IV -> no iron card", [rls(), fx.medication_administration("iron-sucrose", days_ago=30, medicationCodeableConcept=_named("ferumoxytol 30 MG/ML Injectable Solution")), fx.ferritin(30)], set()),
    Vignette("Ferrous gluconate allergy by name only -> oral iron intolerance -> escalate (b)", [rls(), fx.allergy("ferrous-sulfate", code=_named("Ferrous gluconate")), fx.ferritin(30)], {"escalate-iv-iron"}, reasons="b"),
    Vignette("Rotigotine patch by name only + ferritin 30 -> start + add iron to dopamine agonist", [rls(), fx.medication_request("ropinirole", medicationCodeableConcept=_named("rotigotine 2 MG/24HR Transdermal System")), fx.ferritin(30)], {"start-oral-iron", "add-iron-to-dopamine-agonist"}),
    Vignette("Diphenhydramine by name only -> review aggravating medication", [rls(), fx.medication_request("sertraline", medicationCodeableConcept=_named("diphenhydramine hydrochloride 25 MG Oral Capsule")), fx.ferritin(80)], {"iron-stores-adequate", "review-aggravating-medication"}),
]


@pytest.mark.parametrize("vignette", params(NAMES))
def test_article_name_matching(vclient: TestClient, vignette: Vignette) -> None:
    run_vignette(vclient, "rls-iron", vignette)
