"""The aasm-2024 profile beside the article profile: data only, its own services, article unchanged."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator

import pytest
import yaml
from fastapi.testclient import TestClient

from cds_service.engine.ruleset import RULES_DIR
from cds_service.tooling import fixtures as fx
from cds_service.tooling.fixtures import DEFAULT_NOW
from cds_service.tooling.ruletests import load_cases, run_case
from tests.conftest import make_app, outcomes

ROOT = Path(__file__).resolve().parents[1]
AASM_SERVICES = {"rls-iron-aasm2024-patient-view", "rls-iron-aasm2024-order-select", "rls-iron-aasm2024-order-sign"}
ARTICLE_SERVICES = {"rls-iron-patient-view", "rls-iron-order-select", "rls-iron-order-sign"}


def _client(tmp_path: Path, **settings: object) -> TestClient:
    app = make_app(tmp_path, **settings)
    return TestClient(app)


@pytest.fixture(scope="module")
def both(tmp_path_factory) -> Iterator[TestClient]:
    with _client(tmp_path_factory.mktemp("both")) as client:
        yield client


@pytest.fixture(scope="module")
def article_only(tmp_path_factory) -> Iterator[TestClient]:
    with _client(tmp_path_factory.mktemp("article"), services=",".join(sorted(ARTICLE_SERVICES))) as client:
        yield client


def _profile(name: str) -> dict:
    return yaml.safe_load((RULES_DIR / "profiles" / f"{name}.yaml").read_text(encoding="utf-8"))


def test_discovery_lists_article_and_guideline_services(both):
    response = both.get("/cds-services")
    assert response.status_code == 200
    ids = {s["id"] for s in response.json()["services"]}
    assert ids >= AASM_SERVICES | ARTICLE_SERVICES
    hooks = {s["id"]: s["hook"] for s in response.json()["services"]}
    assert hooks["rls-iron-aasm2024-order-select"] == "order-select"


def test_a_deployment_can_enable_only_the_guideline_services(tmp_path):
    with _client(tmp_path, services=",".join(sorted(AASM_SERVICES))) as client:
        ids = {s["id"] for s in client.get("/cds-services").json()["services"]}
        assert ids == AASM_SERVICES
        assert client.post("/cds-services/rls-iron-patient-view", json=fx.cds_request([fx.condition("rls")])).status_code == 404


@pytest.mark.parametrize(
    "ferritin,tsat,article,aasm",
    [
        (60, 30, ["iron-stores-adequate"], ["start-oral-iron"]),
        (90, 30, ["iron-stores-adequate"], ["escalate-iv-iron"]),
        (150, 15, ["iron-stores-adequate"], ["start-oral-iron"]),
        (40, None, ["start-oral-iron"], ["order-iron-studies"]),
    ],
)
def test_same_chart_answered_by_each_profile(both, ferritin, tsat, article, aasm):
    chart = [fx.condition("rls"), fx.ferritin(ferritin)] + ([fx.tsat(tsat)] if tsat is not None else [])
    request = fx.cds_request(chart)
    assert outcomes(both.post("/cds-services/rls-iron-patient-view", json=request)) == article
    response = both.post("/cds-services/rls-iron-aasm2024-patient-view", json=request)
    assert outcomes(response) == aasm
    assert {c["source"]["label"] for c in response.json()["cards"]} == {_profile("aasm-2024")["label"]}


def test_guideline_order_hooks_answer(both):
    request = fx.cds_request([fx.condition("rls"), fx.ferritin(40)], hook="order-sign", drafts=[fx.draft_order("ferrous-sulfate")])
    response = both.post("/cds-services/rls-iron-aasm2024-order-sign", json=request)
    assert outcomes(response) == ["order-iron-studies"]
    assert response.json()["cards"][0]["indicator"] == "warning"
    request = fx.cds_request([fx.condition("rls"), fx.ferritin(40), fx.tsat(25)], hook="order-select", drafts=[fx.draft_order("ferrous-sulfate")])
    assert outcomes(both.post("/cds-services/rls-iron-aasm2024-order-select", json=request)) == ["continue-oral-iron"]


def test_article_services_unchanged_by_the_guideline_profile(both, article_only):
    """Every article rule case gives the same cards whether or not the aasm-2024 services exist."""
    cases = [c for c in load_cases() if c.profile == "article"]
    assert cases
    for case in cases:
        with_guideline = run_case(both, case)
        alone = run_case(article_only, case)
        assert with_guideline.actual == alone.actual == case.expected, case.id
        assert with_guideline.fired == alone.fired, case.id


def test_profile_parameters_match_the_specification():
    article, aasm = _profile("article")["parameters"], _profile("aasm-2024")["parameters"]
    value = lambda params, name: params[name]["value"]  # noqa: E731
    expected_article = {"ferritin_low": 50, "tsat_low": None, "ferritin_iv_only_high": None, "oral_trial_days": 28,
                        "recheck_window_start_days": 28, "recheck_window_end_days": 42}
    expected_aasm = {"ferritin_low": 75, "tsat_low": 20, "ferritin_iv_only_high": 100, "oral_trial_days": 84,
                     "recheck_window_start_days": 84, "recheck_window_end_days": 98}
    shared = {"ferritin_lookback_days": 365, "hb_lookback_days": 90, "tsat_lookback_days": 90, "iv_relief_days": 183,
              "ferritin_overload": 300, "tsat_overload": 45, "hb_threshold_male_g_dl": 13.0, "hb_threshold_female_g_dl": 12.0,
              "hb_threshold_pregnant_g_dl": 11.0, "hb_threshold_sex_unknown_g_dl": 12.0, "hb_threshold_12_14y_g_dl": 12.0,
              "hb_threshold_5_11y_g_dl": 11.5, "hb_threshold_2_4y_g_dl": 11.0, "hb_threshold_6_23m_g_dl": 10.5}
    assert {k: value(article, k) for k in expected_article} == expected_article
    assert {k: value(aasm, k) for k in expected_aasm} == expected_aasm
    for name, v in shared.items():
        assert value(article, name) == value(aasm, name) == v, name
    assert aasm["tsat_overload"]["source"] == "irlssg-2018"
    assert set(article) == set(aasm), "both profiles define the same parameters"


def test_profiles_define_the_card_texts():
    article, aasm = _profile("article")["texts"], _profile("aasm-2024")["texts"]
    keys = {"preferred_iv_product", "ferritin_threshold_text", "dopamine_agonist_caution", "oral_trial_text"}
    assert set(article) >= keys and set(aasm) >= keys
    assert article["preferred_iv_product"] == "IV iron" and aasm["preferred_iv_product"] == "ferric carboxymaltose"
    assert article["ferritin_threshold_text"] == "50 ug/L" and aasm["ferritin_threshold_text"] == "75 ug/L, or TSAT below 20 %"
    assert article["dopamine_agonist_caution"] == "" and "augmentation" in aasm["dopamine_agonist_caution"]


def test_guideline_only_rules_are_listed_only_by_the_guideline_profile(both):
    article, aasm = _profile("article"), _profile("aasm-2024")
    assert aasm["service_prefix"] == "rls-iron-aasm2024"
    assert "aasm-2024.rules.yaml" in aasm["rule_files"] and "aasm-2024.rules.yaml" not in article["rule_files"]
    assert set(article["rule_files"]) <= set(aasm["rule_files"]), "rule files are shared where the logic is the same"
    rulesets = both.app.state.runtime.rulesets
    only_aasm = {r.id for r in rulesets["aasm-2024"].rules} - {r.id for r in rulesets["article"].rules}
    assert only_aasm == {"escalate-iv-iron.e-iv-only-band", "order-iron-studies.tsat-missing", "order-iron-studies.draft-tsat-missing"}
    for rule in rulesets["aasm-2024"].rules:
        if rule.id in only_aasm:
            assert rule.citation["source"] in {"aasm-2024", "irlssg-2018"} and rule.citation.get("strength"), rule.id


def test_no_python_branches_on_a_profile_name():
    """Profiles are data: no Python compares anything with the guideline profile's name."""
    offenders = []
    for folder in ("cds_service", "fhir_mappings"):
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, (ast.Compare, ast.Match)):
                    for const in ast.walk(node):
                        if isinstance(const, ast.Constant) and isinstance(const.value, str) and "aasm" in const.value:
                            offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_every_example_under_both_profiles_prints_the_differences(both, capsys):
    """Runs each sample chart of examples/ through both profiles and prints where they differ."""
    from cds_service.tooling.offline import load_examples

    try:
        examples = load_examples()
    except FileNotFoundError:
        pytest.skip("no examples/ yet")
    if not examples:
        pytest.skip("no examples yet")
    prefixes = {rs.profile: rs.service_prefix for rs in both.app.state.runtime.rulesets.values()}
    differences = []
    for example in examples:
        answers = {}
        for profile, prefix in sorted(prefixes.items()):
            both.app.state.runtime.clock = lambda: example.now
            response = both.post(f"/cds-services/{prefix}-{example.hook}", json=example.cds_request())
            answers[profile] = outcomes(response)
            assert answers[profile] == sorted(example.expected_for(profile)), f"{example.name} ({profile})"
        if answers["article"] != answers["aasm-2024"]:
            differences.append(f"{example.name}: article {answers['article']} | aasm-2024 {answers['aasm-2024']}")
    both.app.state.runtime.clock = lambda: DEFAULT_NOW
    with capsys.disabled():
        print(f"\nexamples that differ between profiles ({len(differences)} of {len(examples)}):")
        for line in differences:
            print("  " + line)


def test_the_default_profile_is_data_and_comes_first_in_discovery(client):
    """No Python names a profile: the profile file says which one is the default."""
    from cds_service.engine.ruleset import load_all_rulesets

    rulesets = load_all_rulesets()
    assert [rs.profile for rs in rulesets.values() if rs.default] == ["article"]
    ids = [s["id"] for s in client.get("/cds-services").json()["services"]]
    assert ids[:3] == ["rls-iron-patient-view", "rls-iron-order-select", "rls-iron-order-sign"]
