"""Therapy facts: oral iron (start, renewals, drafts), IV iron, dopamine agonists, aggravating drugs, allergies."""

from __future__ import annotations

import pytest

from cds_service.tooling import fixtures as fx
from fhir_mappings import build_facts

RX = fx.RXNORM


def facts(*resources, drafts=None, hook="patient-view", full_urls=None):
    return build_facts(fx.mapping_input([fx.patient(), *resources], drafts=drafts, hook=hook, full_urls=full_urls))


def reasons(fs):
    return {(e.resource_id, e.reason) for e in fs.exclusions}


def rx(code, display, text=None):
    return fx.concept(RX, code, display, text)


# --- oral iron ------------------------------------------------------------------------------

def test_active_oral_iron_order_counts_from_authored_on():
    fs = facts(fx.medication_request("ferrous-sulfate", days_ago=40, mid="o1"))
    assert (fs.oral_iron.active, fs.oral_iron.on_record, fs.oral_iron.days, fs.oral_iron.draft) == (True, True, 40, False)
    assert fs.evidence.oral_iron_start_date == fx.day(40)
    assert fs.evidence.active_iron_request_ids == ("o1",)
    assert fs.sources["oral_iron"] == ("MedicationRequest/o1",)


def test_validity_period_start_wins_over_authored_on():
    order = fx.medication_request("ferrous-sulfate", days_ago=40, dispenseRequest={"validityPeriod": {"start": fx.day(30)}})
    assert facts(order).oral_iron.days == 30


def test_statement_counts_from_its_effective_start():
    assert facts(fx.medication_statement("ferrous-sulfate", days_ago=12)).oral_iron.days == 12


def test_earliest_start_of_several_orders_and_statements():
    fs = facts(fx.medication_request("ferrous-sulfate", days_ago=10), fx.medication_statement("ferrous-sulfate", days_ago=35))
    assert fs.oral_iron.days == 35


def test_no_start_date_counts_from_today_and_says_so():
    order = fx.medication_request("ferrous-sulfate", mid="o")
    del order["authoredOn"]
    fs = facts(order)
    assert (fs.oral_iron.active, fs.oral_iron.days) == (True, 0)
    assert "MedicationRequest/o: no start date, counts from today" in fs.notes


def test_renewal_chain_counts_from_the_first_order():
    first = fx.medication_request("ferrous-sulfate", days_ago=70, status="completed", mid="first")
    second = fx.medication_request("ferrous-sulfate", days_ago=40, status="completed", mid="second", priorPrescription={"reference": "MedicationRequest/first"})
    third = fx.medication_request("ferrous-sulfate", days_ago=10, mid="third", priorPrescription={"reference": "MedicationRequest/second"})
    fs = facts(third, second, first)
    assert fs.oral_iron.days == 70
    assert fs.evidence.active_iron_request_ids == ("third",)
    assert set(fs.sources["oral_iron"]) == {"MedicationRequest/first", "MedicationRequest/second", "MedicationRequest/third"}
    assert not any(e.resource_id in ("first", "second") for e in fs.exclusions)


def test_a_cancelled_or_foreign_prior_does_not_extend_the_course():
    cancelled = fx.medication_request("ferrous-sulfate", days_ago=70, status="cancelled", mid="c")
    renewal = fx.medication_request("ferrous-sulfate", days_ago=10, priorPrescription={"reference": "MedicationRequest/c"})
    fs = facts(renewal, cancelled)
    assert fs.oral_iron.days == 10
    assert ("c", "status cancelled") in reasons(fs)
    not_iron = fx.medication_request("sertraline", days_ago=70, status="completed", mid="s")
    assert facts(fx.medication_request("ferrous-sulfate", days_ago=10, priorPrescription={"reference": "MedicationRequest/s"}), not_iron).oral_iron.days == 10


def test_a_cycle_of_priors_terminates():
    a = fx.medication_request("ferrous-sulfate", days_ago=10, mid="a", priorPrescription={"reference": "MedicationRequest/b"})
    b = fx.medication_request("ferrous-sulfate", days_ago=20, status="completed", mid="b", priorPrescription={"reference": "MedicationRequest/a"})
    assert facts(a, b).oral_iron.days == 20


@pytest.mark.parametrize(
    "overrides, reason",
    [
        ({"status": "stopped"}, "status stopped"),
        ({"status": "entered-in-error"}, "entered-in-error"),
        ({"doNotPerform": True}, "doNotPerform"),
    ],
)
def test_orders_that_are_not_active_therapy(overrides, reason):
    fs = facts(fx.medication_request("ferrous-sulfate", mid="m", **overrides))
    assert fs.oral_iron.active is False
    assert ("m", reason) in reasons(fs)


@pytest.mark.parametrize("intent", ["proposal", "plan", "order", "option", None])
def test_intent_never_keeps_an_active_order_out_of_therapy(intent):
    order = fx.medication_request("ferrous-sulfate", mid="m")
    if intent is None:
        del order["intent"]
    else:
        order["intent"] = intent
    assert facts(order).oral_iron.on_record is True


@pytest.mark.parametrize("intent", ["proposal", "plan", "order"])
def test_a_draft_is_the_order_being_placed_whatever_its_intent(intent):
    draft = fx.draft_order("ferrous-sulfate", mid="d1")
    draft["intent"] = intent
    fs = facts(drafts=[draft], hook="order-select")
    assert (fs.oral_iron.active, fs.oral_iron.draft) == (True, True)


def test_completed_statement_is_not_current_oral_therapy():
    fs = facts(fx.medication_statement("ferrous-sulfate", status="completed", sid="s"))
    assert fs.oral_iron.active is False and ("s", "status completed") in reasons(fs)


def test_atc_coded_oral_iron():
    order = fx.medication_request("ferrous-sulfate", medicationCodeableConcept=fx.concept(fx.ATC, "B03AA07", "ferrous sulfate"))
    assert facts(order).oral_iron.active is True


def test_draft_oral_iron_starts_today_and_never_is_a_request_id():
    draft = fx.draft_order("ferrous-sulfate", mid="d1")
    fs = facts(drafts=[draft], hook="order-sign")
    assert (fs.oral_iron.active, fs.oral_iron.on_record, fs.oral_iron.draft, fs.oral_iron.days) == (True, False, True, 0)
    assert fs.evidence.active_iron_request_ids == ()
    fs = facts(fx.medication_request("ferrous-sulfate", days_ago=50, mid="ehr"), drafts=[draft], hook="order-sign")
    assert (fs.oral_iron.on_record, fs.oral_iron.days) == (True, 50)
    assert fs.evidence.active_iron_request_ids == ("ehr",)


def test_draft_of_another_patient_is_dropped():
    fs = facts(drafts=[fx.draft_order("ferrous-sulfate", patient_id="other", mid="d")], hook="order-sign")
    assert fs.oral_iron.active is False and ("d", "subject is Patient/other") in reasons(fs)


def test_ferritin_day_counts_against_the_course_start():
    fs = facts(fx.medication_request("ferrous-sulfate", days_ago=40), fx.ferritin(30, days_ago=5))
    assert fs.ferritin.days_since_oral_start == 35
    assert facts(fx.ferritin(30, days_ago=5)).ferritin.days_since_oral_start is None


# --- IV iron --------------------------------------------------------------------------------

@pytest.mark.parametrize("days_ago, recent", [(0, True), (183, True), (184, False)])
def test_iv_iron_recent_boundary(days_ago, recent):
    fs = facts(fx.medication_administration("iron-sucrose", days_ago=days_ago))
    assert (fs.iv_iron.recent, fs.iv_iron.days_since) == (recent, days_ago)


def test_iv_iron_from_requests_statements_and_administrations():
    assert facts(fx.medication_request("ferric-carboxymaltose", days_ago=20, status="completed")).iv_iron.days_since == 20
    assert facts(fx.medication_statement("iron-sucrose", days_ago=30, status="completed")).iv_iron.days_since == 30
    assert facts(fx.medication_administration("iron-sucrose", days_ago=40, status="in-progress")).iv_iron.days_since == 40
    fs = facts(fx.medication_administration("iron-sucrose", status="not-done", aid="n"))
    assert fs.iv_iron.recent is False and ("n", "status not-done") in reasons(fs)


def test_iv_iron_most_recent_and_ferritin_days_since_infusion():
    fs = facts(
        fx.medication_administration("iron-sucrose", days_ago=150),
        fx.medication_administration("ferric-carboxymaltose", days_ago=90),
        fx.ferritin(30, days_ago=20),
    )
    assert fs.iv_iron.days_since == 90
    assert fs.evidence.iv_iron_date == fx.day(90)
    assert fs.ferritin.days_since_iv_iron == 70


def test_undated_or_future_iv_iron_is_unusable():
    undated = fx.medication_administration("iron-sucrose", aid="u")
    del undated["effectiveDateTime"]
    future = fx.medication_administration("iron-sucrose", days_ago=-3, aid="f")
    fs = facts(future)
    assert fs.iv_iron.recent is False and ("f", "dated in the future") in reasons(fs)
    # An IV iron infusion without a date may be recent: unknown, never "no IV iron".
    fs = facts(undated)
    assert fs.iv_iron.recent is False and {"iv_iron.recent", "iv_iron.days_since"} <= set(fs.unknown)
    assert ("u", "unreadable: effective[x] (missing)") in reasons(fs)
    undated_order = fx.medication_request("iron-sucrose", status="completed", mid="m")
    del undated_order["authoredOn"]
    fs = facts(undated_order)
    assert ("m", "unreadable: authoredOn (missing)") in reasons(fs) and "iv_iron.recent" in fs.unknown


def test_atc_iv_iron_child_code():
    admin = fx.medication_administration("iron-sucrose", medicationCodeableConcept=fx.concept(fx.ATC, "B03AC02", "saccharated iron oxide"))
    assert facts(admin).iv_iron.recent is True


def test_draft_iv_iron_is_a_draft_not_recent():
    fs = facts(drafts=[fx.draft_order("ferric-carboxymaltose")], hook="order-select")
    assert (fs.iv_iron.draft, fs.iv_iron.recent, fs.iv_iron.days_since) == (True, False, None)


def test_active_iv_request_is_an_active_iron_request_id():
    fs = facts(fx.medication_request("iron-sucrose", days_ago=5, mid="iv1"))
    assert fs.evidence.active_iron_request_ids == ("iv1",)


# --- medication references ------------------------------------------------------------------

def test_medication_reference_to_a_contained_medication():
    order = fx.medication_request("ferrous-sulfate", days_ago=20)
    del order["medicationCodeableConcept"]
    order["contained"] = [fx.medication("med1", "ferrous-sulfate")]
    order["medicationReference"] = {"reference": "#med1"}
    assert facts(order).oral_iron.days == 20


@pytest.mark.parametrize("style", ["relative", "uuid"])
def test_medication_reference_to_a_prefetched_medication(style):
    med = fx.medication("med-fcm", "ferric-carboxymaltose")
    admin = fx.medication_administration("iron-sucrose", days_ago=30)
    del admin["medicationCodeableConcept"]
    urls = {}
    if style == "uuid":
        _, urls = fx.full_url_bundle([med])
        admin["medicationReference"] = {"reference": next(iter(urls))}
    else:
        admin["medicationReference"] = {"reference": "Medication/med-fcm"}
    fs = facts(med, admin, full_urls=urls)
    assert (fs.iv_iron.recent, fs.iv_iron.days_since) == (True, 30)


def test_invalid_prefetched_medication_is_not_trusted():
    med = fx.medication("med-x", "ferrous-sulfate")
    med["code"]["coding"][0]["code"] = ["310325"]
    order = fx.medication_request("ferrous-sulfate", mid="m")
    del order["medicationCodeableConcept"]
    order["medicationReference"] = {"reference": "Medication/med-x"}
    fs = facts(med, order)
    assert fs.oral_iron.active is False and {"oral_iron.active", "oral_iron.on_record"} <= set(fs.unknown)
    assert ("m", "unreadable: medicationReference -> Medication.code.coding[0].code") in reasons(fs)


def test_unresolved_medication_reference_is_excluded():
    order = fx.medication_request("ferrous-sulfate", mid="m")
    del order["medicationCodeableConcept"]
    order["medicationReference"] = {"reference": "Medication/missing"}
    fs = facts(order)
    assert fs.oral_iron.active is False and ("m", "medicationReference not resolved") in reasons(fs)


# --- name matching --------------------------------------------------------------------------

def test_name_matches_only_when_no_code_matches_and_is_noted():
    order = fx.medication_request("ferrous-sulfate", mid="n", medicationCodeableConcept=rx("999999", "Ferrous Sulphate 200mg tablets"))
    fs = facts(order)
    assert fs.oral_iron.active is True
    assert any(n.startswith("MedicationRequest/n: matched by name") for n in fs.notes)


def test_a_name_never_overrides_a_code_that_matched():
    order = fx.medication_request("sertraline", medicationCodeableConcept=rx("36437", "sertraline", text="ferrous sulfate"))
    fs = facts(order)
    assert fs.oral_iron.active is False and fs.medications.aggravating is True


def test_iron_like_name_that_matches_nothing_is_a_warning():
    order = fx.medication_request("ferrous-sulfate", mid="otc", medicationCodeableConcept={"text": "Iron supplement 65 mg"})
    fs = facts(order)
    assert fs.oral_iron.active is False
    assert "warning: MedicationRequest/otc: iron-like medication name matches no value set" in fs.notes


def test_abbreviated_name_ferrous_sulf():
    order = fx.medication_request("ferrous-sulfate", medicationCodeableConcept={"text": "FERROUS SULF 325 MG TAB"})
    assert facts(order).oral_iron.active is True


def test_oral_and_iv_gluconates_are_told_apart_by_name():
    oral = fx.medication_request("ferrous-sulfate", medicationCodeableConcept={"text": "ferrous gluconate 240 mg"})
    iv = fx.medication_request("ferrous-sulfate", medicationCodeableConcept={"text": "sodium ferric gluconate complex in sucrose"})
    assert facts(oral).oral_iron.active is True and facts(oral).iv_iron.days_since is None
    assert facts(iv).oral_iron.active is False and facts(iv).iv_iron.recent is True


# --- dopamine agonists and aggravating medications -----------------------------------------

@pytest.mark.parametrize("concept", [rx("72302", "ropinirole"), rx("859033", "pramipexole 0.25 MG"), fx.concept(fx.ATC, "N04BC05", "pramipexole"), {"text": "Rotigotine 2 mg/24 h patch"}])
def test_dopamine_agonists(concept):
    fs = facts(fx.medication_request("ropinirole", medicationCodeableConcept=concept))
    assert fs.medications.dopamine_agonist is True and fs.medications.draft_dopamine_agonist is False


def test_draft_dopamine_agonist():
    fs = facts(drafts=[fx.draft_order("pramipexole")], hook="order-sign")
    assert fs.medications.dopamine_agonist is True and fs.medications.draft_dopamine_agonist is True


@pytest.mark.parametrize("concept", [rx("36437", "sertraline"), rx("312941", "sertraline 50 MG Oral Tablet"), {"text": "Mirtazapine 15 mg"}, {"text": "diphenhydramine 25 mg"}, {"text": "Metoclopramide 10mg"}, {"text": "QUEtiapine 25 mg"}])
def test_aggravating_medications(concept):
    fs = facts(fx.medication_statement("sertraline", medicationCodeableConcept=concept))
    assert fs.medications.aggravating is True
    assert fs.evidence.aggravating_medication_names


@pytest.mark.parametrize("concept", [rx("42347", "bupropion"), {"text": "Bupropion XL 150 mg"}])
def test_bupropion_is_not_aggravating(concept):
    fs = facts(fx.medication_request("bupropion", medicationCodeableConcept=concept))
    assert fs.medications.aggravating is False


def test_inactive_aggravating_medication_does_not_count():
    fs = facts(fx.medication_request("sertraline", status="stopped", mid="s"))
    assert fs.medications.aggravating is False and ("s", "status stopped") in reasons(fs)


# --- allergies ------------------------------------------------------------------------------

def test_oral_iron_intolerance_from_the_contract_code_310325():
    fs = facts(fx.allergy("ferrous-sulfate", aid="a"))
    assert (fs.allergies.oral_iron_intolerance, fs.allergies.iv_iron_allergy) == (True, False)
    assert fs.evidence.oral_iron_intolerance_names == ("ferrous sulfate 325 MG Oral Tablet",)
    assert fs.sources["allergies"] == ("AllergyIntolerance/a",)


def test_iv_iron_allergy():
    fs = facts(fx.allergy("ferric-carboxymaltose"))
    assert (fs.allergies.oral_iron_intolerance, fs.allergies.iv_iron_allergy) == (False, True)
    assert fs.evidence.iv_iron_allergy_names


@pytest.mark.parametrize("clinical, verification, reason", [("inactive", "confirmed", "clinicalStatus inactive"), ("resolved", "confirmed", "clinicalStatus resolved"), ("active", "refuted", "refuted"), ("active", "entered-in-error", "entered-in-error"), (None, "confirmed", "clinicalStatus missing")])
def test_allergy_statuses(clinical, verification, reason):
    fs = facts(fx.allergy("ferrous-sulfate", clinical=clinical, verification=verification, aid="a"))
    assert fs.allergies.oral_iron_intolerance is False and ("a", reason) in reasons(fs)


def test_unconfirmed_allergy_counts():
    assert facts(fx.allergy("iron-sucrose", verification="unconfirmed")).allergies.iv_iron_allergy is True


# --- through HTTP ---------------------------------------------------------------------------

PV = "/cds-services/rls-iron-patient-view"


def codes(response):
    assert response.status_code == 200, response.text
    return sorted(c["source"]["topic"]["code"] for c in response.json()["cards"])


def test_patient_on_oral_iron_is_not_told_to_start_it(client):
    base = [fx.condition("rls"), fx.ferritin(30, days_ago=5)]
    assert "start-oral-iron" in codes(client.post(PV, json=fx.cds_request(base)))
    on_iron = base + [fx.medication_request("ferrous-sulfate", days_ago=10)]
    assert "start-oral-iron" not in codes(client.post(PV, json=fx.cds_request(on_iron)))


def test_stopped_oral_iron_does_not_count_through_http(client):
    chart = [fx.condition("rls"), fx.ferritin(30, days_ago=5), fx.medication_request("ferrous-sulfate", status="stopped")]
    assert "start-oral-iron" in codes(client.post(PV, json=fx.cds_request(chart)))


def test_recent_iv_iron_by_medication_reference_through_http(client):
    med = fx.medication("med-1", "ferric-carboxymaltose")
    admin = fx.medication_administration("iron-sucrose", days_ago=30)
    del admin["medicationCodeableConcept"]
    admin["contained"] = [med]
    admin["medicationReference"] = {"reference": "#med-1"}
    chart = [fx.condition("rls"), fx.ferritin(30, days_ago=5), admin]
    assert "start-oral-iron" not in codes(client.post(PV, json=fx.cds_request(chart)))


def test_only_selected_drafts_count_on_order_select(client):
    chart = [fx.condition("rls"), fx.ferritin(30, days_ago=5)]
    draft = fx.draft_order("ferrous-sulfate", mid="d1")
    other = fx.draft_order("sertraline", mid="d2")
    selected = fx.cds_request(chart, hook="order-select", drafts=[draft, other], selections=["MedicationRequest/d1"])
    not_selected = fx.cds_request(chart, hook="order-select", drafts=[draft, other], selections=["MedicationRequest/d2"])
    assert "start-oral-iron" not in codes(client.post("/cds-services/rls-iron-order-select", json=selected))
    assert "start-oral-iron" in codes(client.post("/cds-services/rls-iron-order-select", json=not_selected))


def test_oral_iron_administration_is_not_a_therapy_fact():
    fs = facts(fx.medication_administration("ferrous-sulfate", days_ago=3, aid="adm"))
    assert fs.oral_iron.active is False and fs.iv_iron.days_since is None
    assert ("adm", "administrations count for IV iron only") in reasons(fs)
