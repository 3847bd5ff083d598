"""`cds-service rules lint` and `rules test`: each check catches the mistake it is for, names the
file, and exits 1; the project's own rules pass. Every case edits a copy of rules/ in tmp_path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cds_service.app import create_app
from cds_service.cli import app as cli
from cds_service.engine.ruleset import RULES_DIR, RuleFileError
from cds_service.tooling.lint import lint
from tests.conftest import make_settings

runner = CliRunner()


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(RULES_DIR, target)
    return target


def edit(path: Path, change) -> None:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(document)
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")


def rule(document: dict, rule_id: str) -> dict:
    return next(r for r in document["rules"] if r["id"] == rule_id)


def errors(rules_dir: Path) -> list[str]:
    return [str(f) for f in lint(rules_dir, with_cases=False).errors]


def test_the_project_rules_lint_clean():
    result = runner.invoke(cli, ["rules", "lint"])
    assert result.exit_code == 0, result.output
    assert "0 error(s), 0 warning(s)" in result.output


def test_unknown_key_is_a_schema_error_naming_the_file(rules):
    edit(rules / "oral-iron.rules.yaml", lambda d: rule(d, "start-oral-iron").update(priority=3))
    found = errors(rules)
    assert any("oral-iron.rules.yaml" in e and "priority" in e for e in found), found
    result = runner.invoke(cli, ["rules", "lint", "--rules-dir", str(rules)])
    assert result.exit_code == 1


def test_missing_citation(rules):
    edit(rules / "oral-iron.rules.yaml", lambda d: rule(d, "start-oral-iron").pop("citation"))
    assert any("oral-iron.rules.yaml: rule start-oral-iron: missing citation" in e for e in errors(rules))


def test_citation_source_not_in_sources(rules):
    edit(rules / "oral-iron.rules.yaml", lambda d: rule(d, "start-oral-iron")["citation"].update(source="blog-post"))
    assert any("'blog-post' is not in sources.yaml" in e for e in errors(rules))


def test_unknown_outcome_fact_field_and_parameter(rules):
    def change(d):
        r = rule(d, "start-oral-iron")
        r["outcome"] = "give-iron"
        r["when"]["all"] += [
            {"fact": "ferritn", "field": "current", "is": True},
            {"fact": "ferritin", "field": "valu", "is": True},
            {"fact": "ferritin", "field": "value_ug_per_l", "op": "<", "param": "ferritin_lo"},
        ]

    edit(rules / "oral-iron.rules.yaml", change)
    found = "\n".join(errors(rules))
    assert "unknown outcome code 'give-iron'" in found
    assert "unknown fact 'ferritn'" in found
    assert "unknown field ferritin.valu" in found
    assert "unknown parameter 'ferritin_lo'" in found


def test_parameter_missing_from_one_profile(rules):
    edit(rules / "profiles" / "aasm-2024.yaml", lambda d: d["parameters"].pop("oral_trial_days"))
    found = errors(rules)
    assert any("'oral_trial_days' is missing from profile aasm-2024" in e for e in found), found


def test_contradictory_booleans_make_a_rule_unreachable(rules):
    edit(rules / "oral-iron.rules.yaml", lambda d: rule(d, "start-oral-iron")["when"]["all"].append({"fact": "conditions", "field": "rls", "is": False}))
    assert any("rule start-oral-iron is unreachable" in e and "conditions.rls" in e for e in errors(rules))


def test_contradictory_comparisons_with_the_same_parameter(rules):
    edit(rules / "oral-iron.rules.yaml", lambda d: rule(d, "start-oral-iron")["when"]["all"].append(
        {"fact": "ferritin", "field": "value_ug_per_l", "op": ">", "param": "ferritin_overload"}
    ))
    edit(rules / "oral-iron.rules.yaml", lambda d: rule(d, "start-oral-iron")["when"]["all"].append(
        {"fact": "ferritin", "field": "value_ug_per_l", "op": "<=", "param": "ferritin_overload"}
    ))
    found = errors(rules)
    assert any("rule start-oral-iron is unreachable" in e and "no value satisfies" in e for e in found), found


def test_a_negated_comparison_alone_is_not_a_contradiction(rules):
    # none-of (ferritin > p) holds when ferritin is missing: not unreachable
    edit(rules / "oral-iron.rules.yaml", lambda d: rule(d, "start-oral-iron")["when"]["all"].append(
        {"none": [{"fact": "hemoglobin", "field": "value_g_dl", "op": ">", "param": "hb_threshold_male_g_dl"}]}
    ))
    assert errors(rules) == []


def test_a_rule_always_overridden_by_a_broader_rule_is_unreachable(rules):
    def change(d):
        d["rules"].append({
            "id": "start-oral-iron.shadow",
            "title": "same as start-oral-iron, but more specific",
            "outcome": "start-oral-iron",
            "when": {"all": [{"fact": "conditions", "field": "rls", "is": True}, {"fact": "conditions", "field": "pregnancy", "is": True}]},
            "citation": {"source": "article", "text": "x"},
        })
        d["rules"].append({
            "id": "iron-stores-adequate.always-in-rls",
            "title": "overrides start-oral-iron whenever RLS is present",
            "outcome": "iron-stores-adequate",
            "overrides": ["start-oral-iron"],
            "when": {"all": [{"fact": "conditions", "field": "rls", "is": True}]},
            "citation": {"source": "article", "text": "x"},
        })

    edit(rules / "oral-iron.rules.yaml", change)
    found = errors(rules)
    assert any("rule start-oral-iron.shadow is unreachable" in e and "iron-stores-adequate.always-in-rls" in e for e in found), found


def test_duplicate_ids_across_files(rules):
    def change(d):
        d["rules"].append(dict(rule(d, "review-aggravating-medication"), title="copy"))

    edit(rules / "oral-iron.rules.yaml", lambda d: d["rules"].append(
        dict(yaml.safe_load((rules / "companion.rules.yaml").read_text())["rules"][-1])
    ))
    found = errors(rules)
    assert any("is already defined in" in e for e in found), found


def test_rule_without_a_test_case_is_a_warning_in_lint_and_a_failure_in_rules_test(rules):
    for tests in rules.glob("*.tests.yaml"):
        if tests.name != "workup.tests.yaml":
            tests.unlink()
    report = lint(rules)
    assert report.errors == []
    untested = [str(w) for w in report.warnings if "no test case makes it fire" in str(w)]
    assert any("continue-oral-iron" in w for w in untested), untested
    result = runner.invoke(cli, ["rules", "lint", "--rules-dir", str(rules)])
    assert result.exit_code == 0
    result = runner.invoke(cli, ["rules", "test", "--rules-dir", str(rules), "--engine", "python"])
    assert result.exit_code == 1
    assert "rules no case makes fire" in result.output and "continue-oral-iron" in result.output


def test_rules_test_fails_on_a_wrong_expectation(rules):
    keep = rules / "workup.tests.yaml"
    for other in rules.glob("*.tests.yaml"):
        if other != keep:
            other.unlink()
    edit(keep, lambda d: d["cases"][0].update(expect=["start-oral-iron"]))
    result = runner.invoke(cli, ["rules", "test", "--rules-dir", str(rules), "--engine", "python"])
    assert result.exit_code == 1
    assert "FAIL" in result.output and "outcomes ['order-iron-studies'] != expected ['start-oral-iron']" in result.output


def test_the_service_refuses_to_start_on_an_invalid_rule_file_and_names_it(rules, tmp_path):
    edit(rules / "oral-iron.rules.yaml", lambda d: rule(d, "start-oral-iron").update(priority=3))
    with pytest.raises(RuleFileError, match=r"oral-iron\.rules\.yaml"):
        create_app(make_settings(tmp_path, rules_dir=rules))


def test_a_typo_in_a_condition_names_the_unknown_key(rules):
    edit(rules / "oral-iron.rules.yaml", lambda d: rule(d, "start-oral-iron")["when"]["all"].append({"fact": "conditions", "field": "rls", "iss": True}))
    found = errors(rules)
    assert any("oral-iron.rules.yaml" in e and "unknown key(s) 'iss' in a condition" in e for e in found), found


def test_a_rule_naming_an_unknown_shared_condition_is_an_error(rules):
    edit(rules / "oral-iron.rules.yaml", lambda d: rule(d, "start-oral-iron")["when"]["all"].append({"condition": "no_iron_overdose"}))
    assert any("oral-iron.rules.yaml: rule start-oral-iron: unknown shared condition 'no_iron_overdose'" in e for e in errors(rules))


def test_a_shared_condition_is_checked_like_a_rule(rules):
    edit(rules / "conditions.yaml", lambda d: d["conditions"][0]["when"].update(field="iron_overload"))
    assert any("unknown field conditions.iron_overload" in e for e in errors(rules))
