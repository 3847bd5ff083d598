"""Choosing the engine (CDS_RULE_ENGINE), the fallback where durable-rules cannot import, both
engines on the whole rule test suite, and "why not" for every silent rule."""

from __future__ import annotations

import json
import logging

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import cds_service.engine as engine_module
from cds_service.app import create_app
from cds_service.cli import app as cli
from cds_service.engine import available_engines, choose_engine
from cds_service.tooling import fixtures as fx
from cds_service.tooling.offline import EXAMPLES_DIR
from cds_service.tooling.ruletests import load_cases
from tests.conftest import make_app, make_settings, outcomes

DURABLE = "durable" in available_engines()


def test_the_reference_evaluator_is_the_default(client):
    health = client.get("/healthz").json()
    assert health["engine"] == "python" and health["engine_note"] is None


@pytest.mark.parametrize("engine", ["durable", "python"] if DURABLE else ["python"])
def test_the_engine_is_chosen_by_setting(tmp_path, engine):
    app = make_app(tmp_path, rule_engine=engine)
    with TestClient(app) as client:
        assert client.get("/healthz").json()["engine"] == engine
        response = client.post("/cds-services/rls-iron-patient-view", json=fx.cds_request([fx.condition("rls"), fx.ferritin(32, days_ago=20), fx.tsat(15)]))
        assert outcomes(response) == ["start-oral-iron"]


def test_without_durable_rules_the_service_starts_on_python_and_says_so(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(engine_module, "available_engines", lambda: ["python"])
    assert choose_engine(None) == ("python", None)
    assert choose_engine("durable")[0] == "python" and "durable-rules" in choose_engine("durable")[1]
    with caplog.at_level(logging.WARNING):
        app = create_app(make_settings(tmp_path, rule_engine="durable"))
    assert any("python evaluator" in r.getMessage() for r in caplog.records)
    with TestClient(app) as client:
        health = client.get("/healthz").json()
    assert health["engine"] == "python"
    assert "durable-rules cannot be imported" in health["engine_note"]


def test_an_unknown_engine_name_is_refused():
    with pytest.raises(ValueError):
        choose_engine("drools")


@pytest.mark.parametrize("engine", ["durable", "python"] if DURABLE else ["python"])
def test_both_engines_pass_the_whole_rule_test_suite(engine):
    """`cds-service rules test` itself (so `make test` runs it), once per engine."""
    result = CliRunner().invoke(cli, ["rules", "test", "--engine", engine])
    assert result.exit_code == 0, result.output[-3000:]
    assert f"engine {engine}: {len(load_cases())} case(s)" in result.output
    assert "cases passed" in result.output and "FAIL" not in result.output
    assert "rules no case makes fire" not in result.output


def test_explain_names_the_first_unmet_condition_of_every_silent_rule():
    runner = CliRunner()
    bundle = EXAMPLES_DIR / "bundles" / "rls-low-ferritin.json"
    result = runner.invoke(cli, ["evaluate", str(bundle), "--now", "2026-11-26", "--json", "--explain"])
    assert result.exit_code == 0, result.output
    trace = json.loads(result.stdout)["trace"]
    fired = {f["rule"] for f in trace["fired"]}
    why = {s["rule"]: s["why"] for s in trace["silent"]}
    assert "start-oral-iron" in fired
    # every rule of the profile is accounted for: it fired, or it says why not
    from cds_service.engine.ruleset import load_all_rulesets

    assert fired | set(why) == {r.id for r in load_all_rulesets()[trace["profile"]].rules}
    assert all(why.values())
    assert why["iron-stores-adequate"] == "ferritin.value_ug_per_l > ferritin_low"
    assert why["order-iron-studies.no-ferritin"] == "ferritin.current is false"
    table = runner.invoke(cli, ["evaluate", str(bundle), "--now", "2026-11-26", "--explain"], env={"COLUMNS": "250"})
    assert "ferritin.value_ug_per_l > ferritin_low" in table.output
