"""Retention: `cds-service decisions purge` deletes decisions (cards, fired rules) and feedback past the retention."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from typer.testing import CliRunner

from cds_service.cli import app as cli
from cds_service.tooling import fixtures as fx
from tests.test_audit_support import SERVICE, db_url, decision_log, feedback_body, rows, running  # noqa: F401

LOW_FERRITIN = [fx.condition("rls"), fx.ferritin(31.7, days_ago=20)]


def test_purge_deletes_what_is_older_than_the_retention_and_keeps_the_rest(tmp_path, db_url):
    now = datetime.now(timezone.utc)
    with running(tmp_path, db_url) as client:
        log = decision_log(client)
        log.clock = lambda: now - timedelta(days=400)
        old = client.post(SERVICE, json=fx.cds_request(LOW_FERRITIN)).json()
        client.post(f"{SERVICE}/feedback", json=feedback_body(old["cards"][0]["uuid"], "accepted"))
        log.clock = lambda: now - timedelta(days=10)
        recent = client.post(SERVICE, json=fx.cds_request(LOW_FERRITIN)).json()
        client.post(f"{SERVICE}/feedback", json=feedback_body(recent["cards"][0]["uuid"], "overridden"))
    assert len(rows(db_url, "decisions")) == 2

    result = CliRunner().invoke(cli, ["decisions", "purge", "--json"], env={"CDS_DATABASE_URL": db_url, "CDS_RETENTION_DAYS": "365"})
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["deleted"] == {"decision_cards": 1, "decision_rules": 1, "feedback": 1, "decisions": 1}
    recent_id = recent["extension"]["decision-id"]
    assert [r["id"] for r in rows(db_url, "decisions")] == [recent_id]
    assert {r["decision_id"] for r in rows(db_url, "decision_cards")} == {recent_id}
    assert {r["decision_id"] for r in rows(db_url, "decision_rules")} == {recent_id}
    assert [r["outcome"] for r in rows(db_url, "feedback")] == ["overridden"]

    result = CliRunner().invoke(cli, ["decisions", "purge", "--days", "5"], env={"CDS_DATABASE_URL": db_url})
    assert result.exit_code == 0 and "1 decisions" in result.output
    assert rows(db_url, "decisions") == [] and rows(db_url, "feedback") == []
