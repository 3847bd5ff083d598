"""Patient facts (age, sex, partial birthDate) and the WHO 2024 anemia threshold."""

from __future__ import annotations

import pytest

from cds_service.tooling import fixtures as fx
from fhir_mappings import build_facts


def facts(patient, *resources):
    return build_facts(fx.mapping_input([patient, *resources]))


def test_age_in_completed_years_and_sex():
    fs = facts(fx.patient(gender="male", birth_date="1975-11-27"))  # birthday tomorrow
    assert (fs.patient.age_known, fs.patient.age_years, fs.patient.sex, fs.patient.is_child) == (True, 50, "male", False)
    assert facts(fx.patient(birth_date="1975-11-26")).patient.age_years == 51
    assert fs.sources["patient"] == ("Patient/pat-1",)


@pytest.mark.parametrize("birth, years", [("2008", 17), ("2008-10", 18), ("2008-11", 17), ("2008-12", 17), ("2008-11-26", 18), ("2008-11-27", 17)])
def test_partial_birth_date_counts_from_its_last_possible_day(birth, years):
    patient = facts(fx.patient(birth_date=birth)).patient
    assert patient.age_years == years
    assert patient.is_child is (years < 18)


@pytest.mark.parametrize("gender", ["other", "unknown", None])
def test_sex_unknown(gender):
    assert facts(fx.patient(gender=gender)).patient.sex == "unknown"


def test_missing_or_future_birth_date_is_age_unknown():
    assert facts(fx.patient(birth_date=None)).patient.age_known is False
    fs = facts(fx.patient(birth_date="2027-01-01"))
    assert fs.patient.age_known is False
    assert ("pat-1", "unreadable: birthDate (in the future)") in {(e.resource_id, e.reason) for e in fs.exclusions}


def _threshold(patient, *resources, hb=11.95):
    return facts(patient, fx.hemoglobin(hb), *resources).hemoglobin


@pytest.mark.parametrize(
    "gender, years, pregnant, threshold",
    [
        ("male", 40, False, 13.0),
        ("female", 40, False, 12.0),
        ("female", 30, True, 11.0),
        ("unknown", 40, False, 12.0),
        ("male", 15, False, 13.0),
        ("male", 14, False, 12.0),
        ("female", 12, False, 12.0),
        ("male", 11, False, 11.5),
        ("female", 5, False, 11.5),
        ("female", 4, False, 11.0),
        ("male", 2, False, 11.0),
    ],
)
def test_who_2024_thresholds(gender, years, pregnant, threshold):
    extra = [fx.condition("pregnancy")] if pregnant else []
    hb = _threshold(fx.patient(gender=gender, birth_date=fx.birth_date_for_age(years)), *extra)
    assert hb.threshold_g_dl == threshold
    # equal to the threshold: not anemic; just below: anemic
    at = _threshold(fx.patient(gender=gender, birth_date=fx.birth_date_for_age(years)), *extra, hb=threshold)
    below = _threshold(fx.patient(gender=gender, birth_date=fx.birth_date_for_age(years)), *extra, hb=round(threshold - 0.1, 1))
    assert (at.anemic, below.anemic) == (False, True)


def test_infants():
    born_10_months_ago = "2026-01-15"
    assert _threshold(fx.patient(birth_date=born_10_months_ago), hb=10.4).threshold_g_dl == 10.5
    assert _threshold(fx.patient(birth_date=born_10_months_ago), hb=10.4).anemic is True
    born_3_months_ago = "2026-08-20"
    hb = _threshold(fx.patient(birth_date=born_3_months_ago), hb=8.0)
    assert (hb.threshold_g_dl, hb.anemic) == (None, False)


def test_unknown_age_uses_the_adult_rule_for_the_sex_and_says_so():
    fs = facts(fx.patient(gender="male", birth_date=None), fx.hemoglobin(12.5))
    assert (fs.hemoglobin.threshold_g_dl, fs.hemoglobin.anemic) == (13.0, True)
    assert any("age unknown" in n for n in fs.notes)


def test_unknown_sex_is_noted():
    fs = facts(fx.patient(gender="other"), fx.hemoglobin(11.9))
    assert fs.hemoglobin.anemic is True
    assert any("sex unknown" in n for n in fs.notes)


def test_threshold_exists_without_a_hemoglobin():
    hb = facts(fx.patient(gender="male")).hemoglobin
    assert (hb.current, hb.threshold_g_dl, hb.anemic) == (False, 13.0, False)
