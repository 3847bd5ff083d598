"""Lab facts: ferritin, hemoglobin, TSAT (measured and derived); units, statuses, dates, "latest"."""

from __future__ import annotations

import random

import pytest

from cds_service.tooling import fixtures as fx
from fhir_mappings import build_facts


def facts(*resources, **kw):
    return build_facts(fx.mapping_input([fx.patient(), *resources], **kw))


def reasons(fs):
    return {(e.resource_id, e.reason) for e in fs.exclusions}


# --- ferritin -------------------------------------------------------------------------------

def test_ferritin_fact_from_a_realistic_observation():
    obs = fx.ferritin(32, days_ago=20, oid="fer-1")
    fs = facts(obs)
    assert fs.ferritin.current is True
    assert fs.ferritin.value_ug_per_l == 32
    assert fs.ferritin.days_ago == 20
    assert fs.ferritin.date == fx.day(20)
    assert fs.ferritin.value_display == "32 ng/mL"
    assert fs.sources["ferritin"] == ("Observation/fer-1",)


@pytest.mark.parametrize(
    "value, ucum, expected",
    [
        (50, "ng/mL", 50.0),
        (50, "ug/L", 50.0),
        (50, "mcg/L", 50.0),
        (112.35, "pmol/L", 50.0),
        (112.37, "pmol/L", 50.01),
        (51, "ng/mL", 51.0),
    ],
)
def test_ferritin_units_convert_to_ug_per_l(value, ucum, expected):
    fs = facts(fx.ferritin(value, unit=ucum, ucum=ucum))
    assert fs.ferritin.value_ug_per_l == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("loinc", ["2276-4", "20567-4", "24373-3", "14723-1"])
def test_every_ferritin_code_counts_and_the_unit_governs(loinc):
    # 14723-1 is the moles/volume code, but a ng/mL quantity under it is read by its unit.
    assert facts(fx.ferritin(40, loinc=loinc)).ferritin.value_ug_per_l == 40
    assert facts(fx.ferritin(112.35, loinc=loinc, unit="pmol/L", ucum="pmol/L")).ferritin.value_ug_per_l == 50


def test_ferritin_goal_code_is_never_a_result():
    goal = fx.observation("86914-9", "Ferritin goal", 100, "ng/mL", "ng/mL", oid="goal-1")
    fs = facts(goal)
    assert fs.ferritin.current is False
    assert ("goal-1", "ferritin goal code 86914-9, not a result") in reasons(fs)


@pytest.mark.parametrize(
    "unit, ucum, reason",
    [
        ("g/mL", "g/mL", "unit g/mL not convertible to ug/L"),
        ("mg/dL", "mg/dL", "unit mg/dL not convertible to ug/L"),
        (None, None, "unit missing, not convertible to ug/L"),
        ("nanograms per ml", None, "unit nanograms per ml not convertible to ug/L"),
    ],
)
def test_unconvertible_or_missing_units_make_the_result_unusable(unit, ucum, reason):
    fs = facts(fx.ferritin(30, unit=unit, ucum=ucum, oid="f"))
    assert fs.ferritin.current is False
    assert ("f", reason) in reasons(fs)


def test_unit_text_is_read_only_through_the_closed_alias_list():
    assert facts(fx.ferritin(30, unit="µg/L", ucum=None)).ferritin.value_ug_per_l == 30
    assert facts(fx.ferritin(30, unit="ng/ml", ucum=None)).ferritin.value_ug_per_l == 30
    # A UCUM code wins over contradicting unit text.
    assert facts(fx.ferritin(30, unit="g/L", ucum="ng/mL")).ferritin.value_ug_per_l == 30


def test_a_non_ucum_unit_system_is_not_trusted():
    obs = fx.ferritin(30, oid="f")
    obs["valueQuantity"]["system"] = "http://example.org/units"
    fs = facts(obs)
    assert fs.ferritin.current is False
    assert any(r.startswith("unit system") for _, r in reasons(fs))


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda o: o["valueQuantity"].update(comparator=">"), "value has a comparator that leaves it on either side of a threshold"),
        (lambda o: o.pop("valueQuantity"), "no valueQuantity"),
        (lambda o: o["valueQuantity"].update(value=-3), "negative value"),
    ],
)
def test_values_that_are_not_plain_numbers_are_unusable(mutate, reason):
    obs = fx.ferritin(30, oid="f")
    mutate(obs)
    fs = facts(obs)
    assert fs.ferritin.current is False
    assert ("f", reason) in reasons(fs)


@pytest.mark.parametrize("status, ok", [("final", True), ("amended", True), ("corrected", True), ("preliminary", False), ("registered", False), ("cancelled", False), ("entered-in-error", False), ("unknown", False)])
def test_observation_status(status, ok):
    fs = facts(fx.ferritin(30, status=status, oid="f"))
    assert fs.ferritin.current is ok
    if not ok:
        expected = "entered-in-error" if status == "entered-in-error" else f"status {status}"
        assert ("f", expected) in reasons(fs)


def test_effective_period_start_and_instant_are_dates():
    period = fx.ferritin(30)
    del period["effectiveDateTime"]
    period["effectivePeriod"] = {"start": fx.instant(15), "end": fx.instant(14)}
    assert facts(period).ferritin.days_ago == 15
    inst = fx.ferritin(30)
    del inst["effectiveDateTime"]
    inst["effectiveInstant"] = "2026-11-20T23:30:00-05:00"  # 04:30 UTC on the 21st
    assert facts(inst).ferritin.date == "2026-11-21"


def test_no_effective_date_and_future_date_are_unusable():
    none = fx.ferritin(30, oid="none")
    del none["effectiveDateTime"]
    future = fx.ferritin(30, days_ago=-1, oid="future")
    fs = facts(none, future)
    assert fs.ferritin.current is False and fs.unknown == ()
    assert {("none", "no effective date"), ("future", "dated in the future")} <= reasons(fs)


@pytest.mark.parametrize(
    "mutate, element",
    [
        (lambda o: o["valueQuantity"].update(value="32"), "valueQuantity.value"),
        (lambda o: o["valueQuantity"].update(value=True), "valueQuantity.value"),
        (lambda o: o["valueQuantity"].update(comparator="~"), "valueQuantity.comparator"),
        (lambda o: o.update(effectiveDateTime="2026-11-20T08:00:00"), "effectiveDateTime"),  # a time needs its timezone
        (lambda o: o.update(effectiveDateTime="20/11/2026"), "effectiveDateTime"),
        (lambda o: o.update(status=["final"]), "status"),
        (lambda o: o["code"]["coding"].append({"system": "http://loinc.org", "code": 2276}), "code.coding[1].code"),
        (lambda o: o.update(subject="Patient/pat-1"), "subject"),
    ],
)
def test_a_malformed_read_element_makes_the_ferritin_unknown(mutate, element):
    """Unreadable is not absent: the newest ferritin cannot be read, so no older one stands in."""
    newest = fx.ferritin(30, days_ago=2, oid="new")
    mutate(newest)
    older = fx.ferritin(80, days_ago=40, oid="old")
    fs = facts(newest, older)
    assert "ferritin" in fs.unknown
    assert [(u.reference, u.fact, u.element) for u in fs.unreadable] == [("Observation/new", "ferritin", element)]
    assert ("new", f"unreadable: {element}") in reasons(fs)


def test_an_unreadable_result_older_than_the_latest_usable_one_changes_nothing():
    broken = fx.ferritin(10, days_ago=40, oid="old")
    broken["valueQuantity"]["value"] = "10"
    fs = facts(broken, fx.ferritin(80, days_ago=2, oid="new"))
    assert fs.ferritin.value_ug_per_l == 80 and fs.unknown == () and fs.unreadable == ()
    assert ("old", "unreadable: valueQuantity.value (older than the latest usable result)") in reasons(fs)


def test_an_unreadable_result_that_is_not_final_or_not_this_patients_is_simply_left_out():
    preliminary = fx.ferritin(10, days_ago=1, oid="p", status="preliminary")
    preliminary["valueQuantity"]["value"] = "10"
    other = fx.ferritin(10, days_ago=1, oid="o", patient_id="pat-other")
    other["effectiveDateTime"] = "yesterday"
    fs = facts(preliminary, other)
    assert fs.unknown == () and fs.unreadable == ()
    assert {("p", "status preliminary (valueQuantity.value unreadable)"), ("o", "subject is Patient/pat-other (effectiveDateTime unreadable)")} <= reasons(fs)


def test_partial_effective_date_counts_from_its_first_day():
    obs = fx.ferritin(30, effectiveDateTime="2026-10")
    assert facts(obs).ferritin.date == "2026-10-01"


@pytest.mark.parametrize("days_ago, current", [(0, True), (365, True), (366, False)])
def test_ferritin_lookback_boundary(days_ago, current):
    assert facts(fx.ferritin(30, days_ago=days_ago)).ferritin.current is current


def test_latest_is_the_newest_then_issued_then_id_whatever_the_order():
    older = fx.ferritin(10, days_ago=30, oid="a-older")
    same_day_early = fx.ferritin(20, days_ago=5, oid="b", issued_days_ago=5)
    same_day_late_issue = fx.ferritin(30, days_ago=5, oid="a", issued_days_ago=4)
    tie_low_id = fx.ferritin(40, days_ago=2, oid="x-1")
    tie_high_id = fx.ferritin(50, days_ago=2, oid="x-2")
    rng = random.Random(7)
    pool = [older, same_day_early, same_day_late_issue, tie_low_id, tie_high_id]
    seen = set()
    for _ in range(20):
        rng.shuffle(pool)
        seen.add(facts(*pool).ferritin.value_ug_per_l)
    assert seen == {50}
    seen = set()
    for _ in range(20):
        rng.shuffle(pool)
        seen.add(facts(*[r for r in pool if r["id"] not in ("x-1", "x-2")]).ferritin.value_ug_per_l)
    assert seen == {30}


def test_missing_issued_sorts_before_any_issued():
    with_issued = fx.ferritin(20, days_ago=3, oid="a")
    without = fx.ferritin(60, days_ago=3, oid="z")
    del without["issued"]
    assert facts(without, with_issued).ferritin.value_ug_per_l == 20


def test_defects_in_elements_no_fact_reads_never_drop_a_result():
    odd = fx.ferritin(10, days_ago=1, oid="odd", category="laboratory", note=[{}], interpretation="L")  # not R4, not read
    odd["code"]["coding"][0]["display"] = ""
    odd["extension"] = [{"url": "https://ehr.example.org/unknown"}]
    odd["valueQuantity"]["unit"] = "ng/mL"
    fs = facts(odd, fx.ferritin(40, days_ago=9, oid="good"))
    assert fs.ferritin.value_ug_per_l == 10 and fs.unknown == () and fs.unreadable == ()


# --- hemoglobin -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "value, ucum, expected",
    [(12.0, "g/dL", 12.0), (120, "g/L", 12.0), (119, "g/L", 11.9), (7.45, "mmol/L", 12.0), (7.4, "mmol/L", 11.92)],
)
def test_hemoglobin_units_convert_to_g_dl(value, ucum, expected):
    fs = facts(fx.hemoglobin(value, unit=ucum, ucum=ucum))
    assert fs.hemoglobin.value_g_dl == pytest.approx(expected)


def test_hemoglobin_moles_code_with_mmol_unit():
    obs = fx.hemoglobin(7.45, loinc="59260-0", unit="mmol/L", ucum="mmol/L")
    assert facts(obs).hemoglobin.value_g_dl == 12.0


def test_hemoglobin_prefers_718_7_on_the_same_day_whatever_the_issued_time():
    other = fx.hemoglobin(13.5, loinc="30350-3", days_ago=3, oid="z", issued_days_ago=2)
    preferred = fx.hemoglobin(11.0, days_ago=3, oid="a", issued_days_ago=3)
    assert facts(other, preferred).hemoglobin.value_g_dl == 11.0
    assert facts(preferred, other).hemoglobin.value_g_dl == 11.0
    # A newer day wins over the preferred code.
    newer = fx.hemoglobin(13.9, loinc="30350-3", days_ago=1)
    assert facts(other, preferred, newer).hemoglobin.value_g_dl == 13.9


@pytest.mark.parametrize("days_ago, current", [(90, True), (91, False)])
def test_hemoglobin_lookback_boundary(days_ago, current):
    assert facts(fx.hemoglobin(11, days_ago=days_ago)).hemoglobin.current is current


# --- TSAT -----------------------------------------------------------------------------------

def test_measured_tsat():
    fs = facts(fx.tsat(18, oid="t"))
    assert (fs.tsat.current, fs.tsat.value_pct, fs.tsat.derived) == (True, 18, False)
    assert fs.sources["tsat"] == ("Observation/t",)


def test_tsat_derived_from_same_day_iron_and_tibc_in_ug_dl():
    fs = facts(fx.serum_iron(60, days_ago=4, oid="fe"), fx.tibc(400, days_ago=4, oid="tibc"))
    assert fs.tsat.current and fs.tsat.derived
    assert fs.tsat.value_pct == 15.0
    assert fs.sources["tsat"] == ("Observation/fe", "Observation/tibc")
    assert any("derived" in n for n in fs.notes)


def test_tsat_derived_from_umol_per_l_pair():
    # 10.74 umol/L x 5.585 = 59.98 ug/dL; 71.6 umol/L = 399.9 ug/dL -> 15.0 %
    fs = facts(fx.serum_iron(10.74, unit="umol/L", ucum="umol/L"), fx.tibc(71.6, unit="umol/L", ucum="umol/L"))
    assert fs.tsat.value_pct == 15.0


def test_no_derived_tsat_from_different_days_or_other_units():
    assert facts(fx.serum_iron(60, days_ago=4), fx.tibc(400, days_ago=5)).tsat.current is False
    fs = facts(fx.serum_iron(60, unit="mg/L", ucum="mg/L", oid="fe"), fx.tibc(400))
    assert fs.tsat.current is False
    assert ("fe", "unit mg/L not convertible to ug/dL") in reasons(fs)


def test_measured_tsat_wins_on_its_day_and_derived_wins_when_newer():
    measured_same_day = fx.tsat(30, days_ago=4)
    pair = [fx.serum_iron(60, days_ago=4), fx.tibc(400, days_ago=4)]
    fs = facts(measured_same_day, *pair)
    assert (fs.tsat.value_pct, fs.tsat.derived) == (30, False)
    older_measured = fx.tsat(30, days_ago=20)
    fs = facts(older_measured, *pair)
    assert (fs.tsat.value_pct, fs.tsat.derived) == (15.0, True)


def test_tsat_above_100_percent_is_unusable():
    fs = facts(fx.tsat(140, oid="t"))
    assert fs.tsat.current is False
    assert ("t", "value implausible in %") in reasons(fs)


def test_hemoglobin_in_g_per_l_labelled_g_dl_is_implausible_not_trusted():
    fs = facts(fx.hemoglobin(121, unit="g/dL", ucum="g/dL", oid="h"))
    assert fs.hemoglobin.current is False
    assert ("h", "value implausible in g/dL") in reasons(fs)
    assert facts(fx.hemoglobin(30, oid="h")).hemoglobin.current is True


def test_observations_of_other_tests_are_ignored_silently():
    glucose = fx.observation("2345-7", "Glucose", 90, "mg/dL", "mg/dL")
    fs = facts(glucose)
    assert fs.exclusions == () and not fs.ferritin.current


@pytest.mark.parametrize(
    "comparator, value, decisive",
    [
        (">", 300, True),  # true value > 300: above every threshold (50, 300)
        (">", 299, False),  # could be 299.5 or 400
        (">=", 300, False),  # could be exactly 300, which is not above 300
        (">=", 301, True),
        ("<", 50, True),  # true value < 50: at or below every threshold
        ("<", 51, False),  # could be 50.5
        ("<=", 50, False),  # could be exactly 50: decisive for a `<=` rule, not for a `<` one (cautious)
        ("<=", 49, True),
    ],
)
def test_a_censored_ferritin_is_used_only_when_every_threshold_is_on_one_side(comparator, value, decisive):
    from fhir_mappings.units import censored_is_decisive

    assert censored_is_decisive(value, comparator, [50.0, 300.0]) is decisive


def test_a_ferritin_above_the_assay_range_is_read_as_overload():
    obs = fx.ferritin(1000, oid="f")
    obs["valueQuantity"]["comparator"] = ">"
    fs = facts(obs)
    assert fs.ferritin.current is True and fs.ferritin.value_ug_per_l == 1000
    assert fs.ferritin.value_display == ">1000 ng/mL"
