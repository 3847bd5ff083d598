"""The decision log never blocks or fails the clinical answer, and loses nothing on a clean stop.

The database starts unavailable (SQLite: a file where its directory should be; PostgreSQL: a
loopback proxy that refuses connections), requests keep getting answers, and the records appear
once it is available again, or are spilled at shutdown and replayed at the next start.
"""

from __future__ import annotations

import json

from prometheus_client import REGISTRY

from cds_service.observability import metrics
from cds_service.tooling import fixtures as fx
from tests.conftest import outcomes
from tests.test_audit_support import SERVICE, db_url, decision_log, feedback_body, outage, rows, running, wait_until  # noqa: F401

LOW_FERRITIN = [fx.condition("rls"), fx.ferritin(31.7, days_ago=20)]


def _failures() -> float:
    return metrics.DECISION_LOG_FAILURES._value.get()


def test_answers_go_out_while_the_database_is_down_and_records_appear_when_it_is_back(tmp_path, outage):
    failures_before = _failures()
    with running(tmp_path, outage.url) as client:
        log = decision_log(client)
        responses = [client.post(SERVICE, json=fx.cds_request(LOW_FERRITIN)) for _ in range(4)]
        assert [outcomes(r) for r in responses] == [["start-oral-iron"]] * 4
        card = responses[0].json()["cards"][0]["uuid"]
        assert client.post(f"{SERVICE}/feedback", json=feedback_body(card)).status_code == 200
        assert log.backlog == 5 and not log.db_ok
        assert REGISTRY.get_sample_value("cds_decision_log_backlog") == 5, "the gauge reads the queue when scraped"
        assert log.healthy(), "a small backlog is not a reason to leave the load balancer"
        assert wait_until(lambda: _failures() >= failures_before + 2), "retries are counted"

        outage.restore()
        assert wait_until(lambda: log.backlog == 0), "the backlog drains once the database is back"
        assert log.db_ok
        assert REGISTRY.get_sample_value("cds_decision_log_backlog") == 0
    ids = {r.json()["extension"]["decision-id"] for r in responses}
    assert {r["id"] for r in rows(outage.real_url, "decisions")} == ids
    [item] = rows(outage.real_url, "feedback")
    assert item["linked"] and item["decision_id"] == responses[0].json()["extension"]["decision-id"]
    assert not (tmp_path / "spill" / "decision-log.spill.jsonl").exists()


def test_a_stop_with_the_database_down_spills_and_the_next_start_replays(tmp_path, outage):
    with running(tmp_path, outage.url) as client:
        responses = [client.post(SERVICE, json=fx.cds_request(LOW_FERRITIN)) for _ in range(3)]
        card = responses[0].json()["cards"][0]["uuid"]
        client.post(f"{SERVICE}/feedback", json=feedback_body(card, "overridden"))
    spill = tmp_path / "spill" / "decision-log.spill.jsonl"
    lines = [json.loads(line) for line in spill.read_text().splitlines()]
    assert [line["kind"] for line in lines] == ["decision", "decision", "decision", "feedback"]
    assert "31.7" not in spill.read_text(), "the spill file holds the same PHI-free records"

    outage.restore()
    with running(tmp_path, outage.url) as client:
        assert outcomes(client.post(SERVICE, json=fx.cds_request(LOW_FERRITIN))) == ["start-oral-iron"]
    stored = {r["id"] for r in rows(outage.real_url, "decisions")}
    assert {r.json()["extension"]["decision-id"] for r in responses} <= stored and len(stored) == 4
    [item] = rows(outage.real_url, "feedback")
    assert item["linked"] and item["outcome"] == "overridden"
    assert list((tmp_path / "spill").glob("decision-log.*.jsonl")) == [], "replayed files are removed"


def test_a_replay_interrupted_by_a_crash_is_replayed_again_without_duplicates(tmp_path, db_url):
    with running(tmp_path, db_url) as client:
        first = client.post(SERVICE, json=fx.cds_request(LOW_FERRITIN)).json()["extension"]["decision-id"]
    # A crash after the records were written but before the replay file was removed.
    from cds_service.audit import Store

    [record] = Store(db_url).get(first)
    record.update(kind="decision", cards=[{"uuid": c["uuid"], "outcome": c["outcome"], "indicator": c["indicator"]} for c in record["cards"]])
    (tmp_path / "spill").mkdir(exist_ok=True)
    (tmp_path / "spill" / "decision-log.replay-crashed.jsonl").write_text(json.dumps(record) + "\n")
    with running(tmp_path, db_url):
        pass
    assert [r["id"] for r in rows(db_url, "decisions")] == [first]
    assert len(rows(db_url, "decision_cards")) == 1


def test_a_full_queue_with_the_database_down_is_unhealthy_and_overflow_is_spilled(tmp_path, outage):
    with running(tmp_path, outage.url) as client:
        log = decision_log(client)
        log.max_queue = 3
        ids = [client.post(SERVICE, json=fx.cds_request(LOW_FERRITIN)).json()["extension"]["decision-id"] for _ in range(5)]
        assert log.backlog == 3
        assert not log.healthy()
        assert (tmp_path / "spill" / "decision-log.spill.jsonl").exists()
    outage.restore()
    with running(tmp_path, outage.url):
        pass
    assert {r["id"] for r in rows(outage.real_url, "decisions")} == set(ids)


def test_a_record_the_database_refuses_does_not_hold_up_the_others(tmp_path, db_url):
    with running(tmp_path, db_url) as client:
        log = decision_log(client)
        log._enqueue([{"kind": "decision", "id": "malformed"}])
        good = client.post(SERVICE, json=fx.cds_request(LOW_FERRITIN)).json()["extension"]["decision-id"]
        assert wait_until(lambda: log.backlog == 0)
    assert [r["id"] for r in rows(db_url, "decisions")] == [good]
    rejected = (tmp_path / "spill" / "decision-log.rejected.jsonl").read_text()
    assert json.loads(rejected)["id"] == "malformed"
