"""`cds-service decisions show|list|purge` and `feedback report`, reading what the service recorded."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from typer.testing import CliRunner

from cds_service.cli import app as cli
from cds_service.tooling import fixtures as fx
from tests.test_audit_support import DB_KINDS, SERVICE, database_url_for, feedback_body, running

LOW_FERRITIN = [fx.condition("rls"), fx.ferritin(31.7, days_ago=20)]
HIGH_FERRITIN = [fx.condition("rls"), fx.ferritin(180, days_ago=20)]
DECLINED = {"reason": {"code": "patient-declined", "system": "http://example.org/override", "display": "Patient declined"}}
ALREADY = {"reason": {"code": "already-taking", "system": "http://example.org/override"}}


def run(url: str, *args: str):
    result = CliRunner().invoke(cli, list(args), env={"CDS_DATABASE_URL": url, "COLUMNS": "200"})
    return result


@pytest.fixture(scope="module", params=DB_KINDS)
def seeded(request, tmp_path_factory):
    """Three decisions (two start-oral-iron, one iron-stores-adequate) and feedback on their cards.

    Built once per database for the module: the commands below only read.
    """
    tmp_path = tmp_path_factory.mktemp("cli")
    db_url = database_url_for(request.param, tmp_path)
    with running(tmp_path, db_url) as client:
        low = [client.post(SERVICE, json=fx.cds_request(LOW_FERRITIN)).json() for _ in range(2)]
        high = client.post(SERVICE, json=(high_request := fx.cds_request(HIGH_FERRITIN))).json()
        feedback = [
            feedback_body(low[0]["cards"][0]["uuid"], "overridden", overrideReason=DECLINED),
            feedback_body(low[1]["cards"][0]["uuid"], "overridden", overrideReason=ALREADY),
            feedback_body(high["cards"][0]["uuid"], "accepted"),
            feedback_body("unknown-card", "overridden", overrideReason=DECLINED),
        ]
        for body in feedback:
            assert client.post(f"{SERVICE}/feedback", json=body).status_code == 200
    return {"url": db_url, "low": low, "high": high, "high_instance": high_request["hookInstance"]}


def test_show_prints_a_decision_readably(seeded):
    decision_id = seeded["low"][0]["extension"]["decision-id"]
    result = run(seeded["url"], "decisions", "show", decision_id)
    assert result.exit_code == 0, result.output
    for expected in (decision_id, "start-oral-iron", "ferritin_low", "Silent rules", "iron-stores-adequate", "patient-declined"):
        assert expected in result.output, expected


def test_show_by_hook_instance_as_json(seeded):
    result = run(seeded["url"], "decisions", "show", seeded["high_instance"], "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["id"] == seeded["high"]["extension"]["decision-id"]
    assert [c["outcome"] for c in record["cards"]] == ["iron-stores-adequate"]
    assert [f["rule"] for f in record["fired"]] == ["iron-stores-adequate"]
    assert record["fired"][0]["facts"]["ferritin"]["values"]["value_ug_per_l"][0] == "> 50 (ferritin_low)"
    assert [f["outcome"] for f in record["feedback"]] == ["accepted"]


def test_show_an_unknown_decision_fails(seeded):
    result = run(seeded["url"], "decisions", "show", "no-such-decision")
    assert result.exit_code == 1
    assert "no decision" in result.output


def test_show_without_a_kept_timeline_says_why(seeded, tmp_path):
    """The default log keeps no lab values or dates, so it has no timeline to draw."""
    picture = tmp_path / "timeline.svg"
    result = run(seeded["url"], "decisions", "show", seeded["low"][0]["extension"]["decision-id"], "--timeline", str(picture))
    assert result.exit_code == 1
    assert "CDS_DECISION_LOG_PHI=true" in result.output
    assert not picture.exists()


def test_show_draws_the_timeline_a_phi_mode_record_kept(tmp_path):
    """The decision view draws the chart the decision was made on: labs against thresholds, the
    oral course, the infusion and the day of the decision, as the test page does."""
    db_url = f"sqlite:///{tmp_path / 'phi.db'}"
    chart = [
        fx.condition("rls"),
        fx.ferritin(28, days_ago=150),
        fx.ferritin(34, days_ago=10),
        fx.hemoglobin(12.6, days_ago=10),
        fx.tsat(14, days_ago=10),
        fx.medication_request("ferrous-sulfate", days_ago=120),
        fx.medication_administration("iron-sucrose", days_ago=400),
    ]
    with running(tmp_path, db_url, decision_log_phi=True) as client:
        answer = client.post(SERVICE, json=fx.cds_request(chart)).json()
    picture = tmp_path / "timeline.svg"
    result = run(db_url, "decisions", "show", answer["extension"]["decision-id"], "--timeline", str(picture))
    assert result.exit_code == 0, result.output
    svg = picture.read_text()
    assert svg.count('class="point ferritin"') == 2 and svg.count('class="point hemoglobin"') == 1 and svg.count('class="point tsat"') == 1
    assert 'data-name="ferritin_low"' in svg
    assert svg.count('class="oral-course"') == 1 and svg.count('class="infusion"') == 1
    assert f"decision {fx.DEFAULT_NOW.date()}" in svg


def test_list_filters_by_outcome_and_since(seeded):
    result = run(seeded["url"], "decisions", "list", "--since", "2026-11-01", "--outcome", "start-oral-iron", "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert sorted(r["id"] for r in listed) == sorted(r["extension"]["decision-id"] for r in seeded["low"])
    assert all(r["outcomes"] == ["start-oral-iron"] for r in listed)

    future = (datetime.now(timezone.utc) + timedelta(days=1)).date().isoformat()
    assert json.loads(run(seeded["url"], "decisions", "list", "--since", future, "--json").output) == []
    table = run(seeded["url"], "decisions", "list")
    assert table.exit_code == 0 and "3 decision(s)" in table.output


def test_list_rejects_a_bad_date(seeded):
    result = run(seeded["url"], "decisions", "list", "--since", "last tuesday")
    assert result.exit_code != 0


def test_feedback_report_counts_accepted_and_overridden_per_outcome_with_reasons(seeded):
    result = run(seeded["url"], "feedback", "report", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    by_outcome = {row["outcome"]: row for row in report["outcomes"]}
    oral = by_outcome["start-oral-iron"]
    assert (oral["cards"], oral["accepted"], oral["overridden"], oral["override_rate"]) == (2, 0, 2, 1.0)
    assert sorted((r["code"], r["count"]) for r in oral["override_reasons"]) == [("already-taking", 1), ("patient-declined", 1)]
    adequate = by_outcome["iron-stores-adequate"]
    assert (adequate["cards"], adequate["accepted"], adequate["overridden"]) == (1, 1, 0)
    assert report["unlinked"]["overridden"] == 1

    table = run(seeded["url"], "feedback", "report")
    assert table.exit_code == 0
    assert "start-oral-iron" in table.output and "patient-declined" in table.output and "unknown card uuid" in table.output


def test_the_cli_says_when_the_database_cannot_be_read(tmp_path):
    blocker = tmp_path / "dbdir"
    blocker.write_text("not a directory")
    result = run(f"sqlite:///{blocker / 'decisions.db'}", "decisions", "list")
    assert result.exit_code == 1
    assert "could not be read" in result.output
