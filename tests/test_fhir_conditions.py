"""Condition facts: SNOMED and ICD-10-CM codes (dotted, undotted, children) and statuses."""

from __future__ import annotations

import pytest

from cds_service.tooling import fixtures as fx
from fhir_mappings import build_facts

ICD = fx.ICD10
SCT = fx.SNOMED


def conditions_of(*resources):
    return build_facts(fx.mapping_input([fx.patient(), *resources])).conditions


def coded(system, code, **kw):
    return fx.condition("rls", code=fx.concept(system, code, "a display that is never read"), **kw)


@pytest.mark.parametrize(
    "system, code, field",
    [
        (SCT, "32914008", "rls"),
        (ICD, "G25.81", "rls"),
        (ICD, "G2581", "rls"),
        (SCT, "87522002", "ida"),
        (ICD, "D50.0", "ida"),
        (ICD, "D500", "ida"),
        (ICD, "D50.9", "ida"),
        (ICD, "D509", "ida"),
        (ICD, "D50.8", "ida"),
        (ICD, "D50", "ida"),
        (SCT, "77386006", "pregnancy"),
        (ICD, "Z33.1", "pregnancy"),
        (SCT, "396331005", "absorption_disorder"),
        (ICD, "K90.0", "absorption_disorder"),
        (SCT, "34000006", "absorption_disorder"),
        (ICD, "K50.00", "absorption_disorder"),
        (ICD, "K50.913", "absorption_disorder"),
        (SCT, "64766004", "absorption_disorder"),
        (ICD, "K51.90", "absorption_disorder"),
        (ICD, "K519", "absorption_disorder"),
        (ICD, "K90.9", "absorption_disorder"),
        (ICD, "Z98.84", "absorption_disorder"),
        (ICD, "E83.11", "iron_overload_disorder"),
        (ICD, "E83.110", "iron_overload_disorder"),
        (ICD, "E83111", "iron_overload_disorder"),
        (ICD, "E83.118", "iron_overload_disorder"),
        (ICD, "E83.119", "iron_overload_disorder"),
        ("urn:oid:2.16.840.1.113883.6.90", "G25.81", "rls"),
    ],
)
def test_codes_map_to_their_condition(system, code, field):
    result = conditions_of(coded(system, code))
    assert getattr(result, field) is True
    others = {"rls", "ida", "pregnancy", "absorption_disorder", "iron_overload_disorder"} - {field}
    assert not any(getattr(result, other) for other in others)


@pytest.mark.parametrize(
    "system, code",
    [
        (ICD, "E83.1"),  # disorders of iron metabolism in general, not hemochromatosis
        (ICD, "E83.10"),
        (ICD, "D51.0"),  # B12 deficiency
        (ICD, "G25.8"),
        (ICD, "K52.9"),
        (ICD, "D5"),
        (SCT, "G25.81"),  # right code, wrong system
        ("http://hl7.org/fhir/sid/icd-10", "Z98.84"),  # not ICD-10-CM
    ],
)
def test_near_misses_do_not_match(system, code):
    result = conditions_of(coded(system, code))
    assert not any(vars(result).values())


def test_display_text_never_decides():
    cond = fx.condition("rls", code={"coding": [{"system": SCT, "code": "1234", "display": "Restless legs syndrome"}], "text": "Restless legs syndrome"})
    assert conditions_of(cond).rls is False


@pytest.mark.parametrize("clinical, usable", [("active", True), ("recurrence", True), ("relapse", True), ("inactive", False), ("remission", False), ("resolved", False)])
def test_clinical_status(clinical, usable):
    assert conditions_of(fx.condition("rls", clinical=clinical)).rls is usable


@pytest.mark.parametrize("verification, usable", [("confirmed", True), ("provisional", True), ("differential", True), ("unconfirmed", True), ("refuted", False), ("entered-in-error", False), (None, True)])
def test_verification_status(verification, usable):
    assert conditions_of(fx.condition("rls", verification=verification)).rls is usable


def test_exclusion_reasons_for_conditions():
    fs = build_facts(
        fx.mapping_input(
            [
                fx.patient(),
                fx.condition("rls", verification="refuted", cid="c-ref"),
                fx.condition("rls", verification="entered-in-error", cid="c-eie"),
                fx.condition("rls", clinical="resolved", cid="c-res"),
                fx.condition("rls", clinical=None, cid="c-none"),
                fx.condition("rls", cid="c-abated", abatementDateTime=fx.day(3)),
                fx.condition("rls", cid="c-future", onsetDateTime=fx.day(-5)),
                fx.condition("rls", cid="c-other", patient_id="other"),
            ]
        )
    )
    assert fs.conditions.rls is False
    assert {(e.resource_id, e.reason) for e in fs.exclusions} == {
        ("c-ref", "refuted"),
        ("c-eie", "entered-in-error"),
        ("c-res", "clinicalStatus resolved"),
        ("c-none", "clinicalStatus missing"),
        ("c-abated", "abated"),
        ("c-future", "dated in the future"),
        ("c-other", "subject is Patient/other"),
    }


def test_status_read_from_coding_without_text_and_without_system():
    cond = fx.condition("rls", clinicalStatus={"coding": [{"code": "active"}]}, verificationStatus={"coding": [{"system": fx.VERIFICATION, "code": "confirmed"}]})
    assert conditions_of(cond).rls is True


def test_status_with_only_text_is_unreadable_and_unusable():
    cond = fx.condition("rls", clinicalStatus={"text": "Active"}, cid="c")
    fs = build_facts(fx.mapping_input([fx.patient(), cond]))
    assert fs.conditions.rls is False
    assert ("c", "clinicalStatus unreadable") in {(e.resource_id, e.reason) for e in fs.exclusions}


def test_usable_conditions_are_sources():
    fs = build_facts(fx.mapping_input([fx.patient(), fx.condition("rls", cid="r"), fx.condition("hemochromatosis", cid="h")]))
    assert fs.sources["conditions"] == ("Condition/h", "Condition/r")
    assert fs.conditions.iron_overload_disorder is True


def test_rls_from_icd_through_http(client):
    request = fx.cds_request([fx.condition("rls", code=fx.concept(ICD, "G2581")), fx.ferritin(32, days_ago=20)])
    response = client.post("/cds-services/rls-iron-patient-view", json=request)
    assert "start-oral-iron" in [c["source"]["topic"]["code"] for c in response.json()["cards"]]


def test_refuted_rls_gives_no_card_through_http(client):
    request = fx.cds_request([fx.condition("rls", verification="refuted"), fx.ferritin(32, days_ago=20)])
    response = client.post("/cds-services/rls-iron-patient-view", json=request)
    assert response.status_code == 200 and response.json()["cards"] == []


# --- pregnancy status Observation (LOINC 82810-3) ----------------------------------------------

PREGNANT = fx.concept(SCT, "77386006", "Pregnant")
NOT_PREGNANT = fx.concept(SCT, "60001007", "Not pregnant")


def pregnancy_status(value, days_ago=30, **kw):
    return fx.observation("82810-3", "Pregnancy status", None, None, days_ago=days_ago, valueCodeableConcept=value, **kw)


def facts_of(*resources):
    return build_facts(fx.mapping_input([fx.patient(), *resources], params=fx.article_params()))


@pytest.mark.parametrize(
    "observation, pregnant",
    [
        (pregnancy_status(PREGNANT), True),
        (pregnancy_status(PREGNANT, days_ago=280), True),
        (pregnancy_status(PREGNANT, days_ago=281), False),
        (pregnancy_status(PREGNANT, days_ago=-1), False),
        (pregnancy_status(NOT_PREGNANT), False),
        (pregnancy_status(PREGNANT, status="preliminary"), False),
        (pregnancy_status(PREGNANT, patient_id="pat-other"), False),
    ],
)
def test_a_pregnancy_status_observation_saying_pregnant_within_280_days_is_pregnancy(observation, pregnant):
    fs = facts_of(observation)
    assert fs.conditions.pregnancy is pregnant and fs.unknown == ()


def test_an_unreadable_pregnancy_status_observation_makes_pregnancy_unknown():
    broken = pregnancy_status(PREGNANT, oid="ps-1", effectiveDateTime="last month")
    fs = facts_of(broken)
    assert fs.unknown == ("conditions.pregnancy",) and fs.record.pregnancy_unknown is True
    assert [(u.reference, u.fact, u.element) for u in fs.unreadable] == [("Observation/ps-1", "pregnancy", "effectiveDateTime")]
    old = pregnancy_status({"coding": {"code": "77386006"}}, days_ago=400, oid="ps-2")
    assert facts_of(old).unknown == (), "a readable date outside the window rules it out"
