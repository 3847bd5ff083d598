"""Every rule test case of rules/*.tests.yaml through the real HTTP pipeline, and rule coverage.

The cases are the clinical specification written as charts; each runs as its own test (id:
file:profile:case name). The coverage test fails when any rule of any profile is fired by no
case, so a new rule cannot land without a case that shows it working.
"""

from __future__ import annotations

from typing import Iterator

import pytest
from fastapi.testclient import TestClient

from cds_service.tooling.ruletests import CaseResult, RuleCase, coverage, load_cases, run_case
from tests.conftest import serve

CASES = load_cases()
RESULTS: dict[str, CaseResult] = {}


@pytest.fixture(scope="module")
def rules_client(tmp_path_factory) -> Iterator[TestClient]:
    """One app for all cases (the clock is set per case by the runner)."""
    yield from serve(tmp_path_factory.mktemp("rule-cases"))


def _result(client: TestClient, case: RuleCase) -> CaseResult:
    key = f"{case.file}:{case.profile}:{case.name}"
    if key not in RESULTS:
        RESULTS[key] = run_case(client, case)
    return RESULTS[key]


def test_cases_exist_for_every_profile(rules_client) -> None:
    profiles = set(rules_client.app.state.runtime.rulesets)
    assert profiles <= {c.profile for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rule_case(rules_client, case: RuleCase) -> None:
    result = _result(rules_client, case)
    assert result.passed, f"{case.id}: " + "; ".join(result.problems) + f" (fired: {result.fired})"


def test_every_rule_of_every_profile_is_covered(rules_client) -> None:
    results = [_result(rules_client, case) for case in CASES]
    uncovered = coverage(results, rules_client.app.state.runtime.rulesets)
    assert {p: sorted(ids) for p, ids in uncovered.items() if ids} == {}


def _rules_copy(tmp_path, cases_yaml: str):
    import shutil

    from cds_service.engine.ruleset import RULES_DIR

    target = tmp_path / "rules"
    shutil.copytree(RULES_DIR, target, ignore=shutil.ignore_patterns("*.tests.yaml"))
    (target / "one.tests.yaml").write_text(cases_yaml, encoding="utf-8")
    return target


def test_runner_fails_a_wrong_expectation_and_reports_uncovered_rules(rules_client, tmp_path) -> None:
    rules_dir = _rules_copy(tmp_path, """
format: rls-iron-rule-tests/1
cases:
  - name: low ferritin wrongly expected adequate
    resources: [rls, {ferritin: 32}]
    expect: [iron-stores-adequate]
    indicators: {start-oral-iron: info}
""")
    (case,) = load_cases(rules_dir)
    assert case.service_id == "rls-iron-patient-view" and case.request["context"]["patientId"] == "pat-1"
    result = run_case(rules_client, case)
    assert not result.passed and result.actual == ["start-oral-iron"] and result.fired == ["start-oral-iron"]
    assert any("!= expected ['iron-stores-adequate']" in p for p in result.problems)
    assert any("indicator 'warning' != expected 'info'" in p for p in result.problems)
    uncovered = coverage([result], rules_client.app.state.runtime.rulesets)
    assert "start-oral-iron" not in uncovered["article"] and "escalate-iv-iron.a-oral-trial-failed" in uncovered["article"]
    assert "start-oral-iron" in uncovered["aasm-2024"]


def test_malformed_case_names_its_file_and_case(tmp_path) -> None:
    from cds_service.tooling.ruletests import RuleCaseError

    rules_dir = _rules_copy(tmp_path, """
format: rls-iron-rule-tests/1
cases:
  - name: a typo in a builder
    resources: [rls, {feritin: 32}]
    expect: []
""")
    with pytest.raises(RuleCaseError, match=r"one.tests.yaml: case 'a typo in a builder': unknown builder 'feritin'"):
        load_cases(rules_dir)
