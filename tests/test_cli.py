"""`cds-service evaluate`, `request` and `examples`, as a developer types them."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cds_service.cli import app
from cds_service.tooling import fixtures as fx
from cds_service.tooling.offline import EXAMPLES_DIR

runner = CliRunner()
BUNDLES = EXAMPLES_DIR / "bundles"
NOW = "2026-11-26"


def run(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def codes(output: str) -> list[str]:
    return sorted(card["source"]["topic"]["code"] for card in json.loads(output)["cards"])


def write(tmp_path: Path, name: str, document: object) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_evaluate_bundle_prints_a_table_of_cards():
    result = run("evaluate", str(BUNDLES / "rls-low-ferritin.json"), "--now", NOW)
    assert result.exit_code == 0, result.output
    assert "start-oral-iron" in result.output and "warning" in result.output
    assert "Ferritin 32" in result.output


def test_evaluate_json_is_a_cds_hooks_response():
    result = run("evaluate", str(BUNDLES / "rls-low-ferritin.json"), "--now", NOW, "--json")
    assert result.exit_code == 0, result.output
    assert codes(result.stdout) == ["start-oral-iron"]
    assert "trace" not in json.loads(result.stdout)


def test_evaluate_explain_shows_fired_rule_facts_and_silent_rules():
    result = run("evaluate", str(BUNDLES / "rls-low-ferritin.json"), "--now", NOW, "--explain")
    assert result.exit_code == 0, result.output
    assert "Fired rules" in result.output and "Silent rules" in result.output
    assert "Observation/ex-rls-low-ferritin-obs-2" in result.output  # the ferritin the card used
    assert "value_ug_per_l=32.0" in result.output  # and the fact the rule compared
    assert "iron-stores-adequate" in result.output  # silent, with its unmet condition


def test_evaluate_explain_lists_excluded_resources():
    result = run("evaluate", str(BUNDLES / "entered-in-error-ferritin.json"), "--now", NOW, "--json", "--explain")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert codes(result.stdout) == ["order-iron-studies"]
    assert any(e["resource"] == "Observation/ex-entered-in-error-ferritin-obs-2" for e in body["trace"]["excluded"])
    assert body["facts"]["ferritin"]["current"] is False


def test_now_changes_the_answer():
    """The same chart a year and a half later: the ferritin is no longer current."""
    result = run("evaluate", str(BUNDLES / "rls-low-ferritin.json"), "--now", "2028-06-01", "--json")
    assert result.exit_code == 0, result.output
    assert codes(result.stdout) == ["order-iron-studies"]


def test_evaluate_accepts_a_cds_hooks_request():
    result = run("evaluate", str(EXAMPLES_DIR / "requests" / "start-oral-iron.json"), "--now", NOW, "--json")
    assert result.exit_code == 0, result.output
    assert codes(result.stdout) == ["start-oral-iron"]


def test_evaluate_transaction_bundle_with_urn_uuid_references(tmp_path: Path):
    patient = fx.patient("ignored")
    patient.pop("id")
    condition = fx.condition("rls")
    ferritin = fx.ferritin(30, days_ago=12)
    for resource in (condition, ferritin):
        resource.pop("id")
        resource["subject"] = {"reference": "urn:uuid:7f1c2a0e-0000-4000-8000-000000000001"}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": f"urn:uuid:7f1c2a0e-0000-4000-8000-00000000000{i}", "resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
            for i, r in enumerate((patient, condition, ferritin), start=1)
        ],
    }
    result = run("evaluate", str(write(tmp_path, "tx.json", bundle)), "--now", "2026-11-26T09:00:00Z", "--json")
    assert result.exit_code == 0, result.output
    assert codes(result.stdout) == ["start-oral-iron"]


def test_evaluate_searchset_with_patient_option(tmp_path: Path):
    resources = [fx.patient("p1"), fx.patient("p2", name=("Other", "Person")), fx.condition("rls", patient_id="p2"), fx.ferritin(150, patient_id="p2")]
    path = write(tmp_path, "search.json", fx.bundle(resources))
    ambiguous = run("evaluate", str(path), "--now", NOW)
    assert ambiguous.exit_code == 2 and "--patient" in ambiguous.output
    result = run("evaluate", str(path), "--patient", "p2", "--now", NOW, "--json")
    assert result.exit_code == 0, result.output
    assert codes(result.stdout) == ["iron-stores-adequate"]


def test_evaluate_order_sign_with_a_draft_file():
    result = run(
        "evaluate", str(BUNDLES / "order-sign-iron-without-ferritin.json"), "--hook", "order-sign",
        "--draft", str(EXAMPLES_DIR / "drafts" / "ferrous-sulfate-325.json"), "--now", NOW, "--json",
    )
    assert result.exit_code == 0, result.output
    cards = json.loads(result.stdout)["cards"]
    assert [c["source"]["topic"]["code"] for c in cards] == ["order-iron-studies"]


def test_profile_option_selects_the_other_rule_set():
    """aasm-2024 needs a TSAT as well as a ferritin before advising iron; the article does not."""
    bundle = str(BUNDLES / "rls-low-ferritin-no-tsat.json")
    article = run("evaluate", bundle, "--now", NOW, "--json")
    aasm = run("evaluate", bundle, "--now", NOW, "--profile", "aasm-2024", "--json")
    assert article.exit_code == 0 and aasm.exit_code == 0, aasm.output
    assert codes(article.stdout) == ["start-oral-iron"]
    assert codes(aasm.stdout) == ["order-iron-studies"]


def test_bad_inputs_exit_2_with_a_message_not_a_traceback(tmp_path: Path):
    (tmp_path / "x.json").write_text("{not json", encoding="utf-8")
    cases = {
        "missing file": ["evaluate", str(tmp_path / "nope.json")],
        "not json": ["evaluate", str(tmp_path / "x.json")],
        "a bare Observation": ["evaluate", str(write(tmp_path, "obs.json", fx.ferritin(30)))],
        "bad --now": ["evaluate", str(BUNDLES / "rls-low-ferritin.json"), "--now", "next tuesday"],
        "unknown hook": ["evaluate", str(BUNDLES / "rls-low-ferritin.json"), "--hook", "encounter-start"],
        "order hook without draft": ["evaluate", str(BUNDLES / "rls-low-ferritin.json"), "--hook", "order-sign"],
        "unknown profile": ["evaluate", str(BUNDLES / "rls-low-ferritin.json"), "--profile", "nice-2099"],
        "invalid request": ["evaluate", str(write(tmp_path, "req.json", {"hook": "patient-view", "context": {}}))],
    }
    for name, args in cases.items():
        result = run(*args)
        assert result.exit_code == 2, f"{name}: {result.output}"
        assert "error:" in result.output and "Traceback" not in result.output, name


def test_request_builds_what_an_ehr_would_send():
    result = run("request", str(BUNDLES / "failed-oral-trial.json"), "--hook", "patient-view")
    assert result.exit_code == 0, result.output
    request = json.loads(result.stdout)
    assert request["hook"] == "patient-view" and request["context"]["patientId"] == "ex-failed-oral-trial"
    from fhir_mappings.prefetch_keys import prefetch_templates

    assert set(request["prefetch"]) == set(prefetch_templates())
    assert request["prefetch"]["patient"]["id"] == "ex-failed-oral-trial"
    labs = request["prefetch"]["labs"]
    assert labs["type"] == "searchset" and labs["total"] == 3
    assert all(e["fullUrl"].startswith("https://fhir.example.org/r4/Observation/") for e in labs["entry"])
    assert [e["resource"]["resourceType"] for e in request["prefetch"]["medications"]["entry"]] == ["MedicationRequest"]


def test_request_for_order_select_puts_the_draft_in_context(tmp_path: Path):
    out = tmp_path / "select.json"
    result = run(
        "request", str(BUNDLES / "order-select-oral-iron-celiac.json"), "--hook", "order-select",
        "--draft", str(EXAMPLES_DIR / "drafts" / "ferrous-sulfate-325.json"), "--out", str(out),
    )
    assert result.exit_code == 0, result.output
    request = json.loads(out.read_text(encoding="utf-8"))
    drafts = request["context"]["draftOrders"]["entry"]
    assert [d["resource"]["status"] for d in drafts] == ["draft"]
    assert drafts[0]["resource"]["subject"] == {"reference": "Patient/ex-order-select-oral-iron-celiac"}
    assert request["context"]["selections"] == ["MedicationRequest/draft-ferrous-sulfate-325"]
    assert request["prefetch"]["medications"]["entry"] == []  # a draft is not in the EHR's search results
    evaluated = run("evaluate", str(out), "--now", NOW, "--json")
    assert evaluated.exit_code == 0, evaluated.output


def test_request_rejects_a_request_document():
    result = run("request", str(EXAMPLES_DIR / "requests" / "start-oral-iron.json"))
    assert result.exit_code == 2 and "expected a FHIR Bundle" in result.output


def test_examples_list_prints_each_example_with_its_outcome():
    result = run("examples", "list")
    assert result.exit_code == 0, result.output
    assert "failed-oral-trial.json" in result.output and "escalate-iv-iron" in result.output
    assert "child-low-ferritin.json" in result.output and "aasm-2024" in result.output


def test_examples_requests_writes_one_file_per_outcome(tmp_path: Path):
    result = run("examples", "requests", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    written = sorted(p.stem for p in tmp_path.glob("*.json"))
    # one per outcome (patient-view), and one per order-hook example that names a request
    assert "start-oral-iron" in written and "order-select-sandbox-draft" in written and len(written) == 15
    for path in tmp_path.glob("*.json"):
        assert path.read_text(encoding="utf-8") == (EXAMPLES_DIR / "requests" / path.name).read_text(encoding="utf-8")


def test_examples_check_agrees_with_the_manifest():
    result = run("examples", "check")
    assert result.exit_code == 0, result.output
    assert "DIFFERS" not in result.output and "failed-oral-trial" in result.output


def test_explain_names_unreadable_resources_and_the_advice_withheld(tmp_path):
    broken = fx.ferritin(12, days_ago=3, oid="fer-new", effectiveDateTime="03/12/2026")
    request = write(tmp_path, "unreadable.json", fx.cds_request([fx.condition("rls"), broken, fx.ferritin(30, days_ago=60)]))
    result = run("evaluate", str(request), "--now", NOW, "--explain")
    assert result.exit_code == 0, result.output
    assert "review-unreadable-record" in result.output
    assert "Unreadable resources" in result.output and "Observation/fer-new" in result.output and "effectiveDateTime" in result.output
    assert "Withheld" in result.output and "start-oral-iron" in result.output
