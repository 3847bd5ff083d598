"""The one insert path of the decision log (SQLAlchemy Core): realistic decision records (cards,
fired rules with banded facts, PHI mode on and off, unicode and quotes) read back as written, and
a batch written twice is stored once."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from cds_service.audit.records import decision_record
from cds_service.audit.store import Store
from cds_service.runtime import build_runtime
from cds_service.settings import Settings
from cds_service.tooling import fixtures as fx
from cds_service.tooling.offline import evaluate_document
from tests.test_audit_support import rows

CHARTS = {
    "start-oral-iron": [fx.patient(), fx.condition("rls"), fx.ferritin(31.7, days_ago=20), fx.ferritin(20, status="entered-in-error")],
    "two cards": [fx.patient(), fx.condition("rls"), fx.ferritin(30, days_ago=5), fx.medication_request("ferrous-sulfate", days_ago=60), fx.medication_request("sertraline")],
    "no card": [fx.patient(), fx.ferritin(80, days_ago=5)],
    "unicode and quotes": [fx.patient(name=("Zoë", "O'Brien \"Jr\"")), fx.condition("rls"), fx.ferritin(12, days_ago=3)],
}


def _records(tmp_path, phi: bool) -> list[dict]:
    settings = Settings(auth_mode="off", decision_log_phi=phi, database_url=f"sqlite:///{tmp_path / 'unused.db'}")
    runtime = build_runtime(settings)
    records = []
    for n, (name, chart) in enumerate(CHARTS.items()):
        evaluation = evaluate_document(runtime, fx.cds_request(chart), now=fx.DEFAULT_NOW)
        record = decision_record(evaluation, settings, fx.DEFAULT_NOW + timedelta(seconds=n, microseconds=123456))
        records.append(record)
    runtime.close()
    return records


@pytest.mark.parametrize("phi", [False, True], ids=["bands", "phi"])
def test_records_read_back_as_written(tmp_path, phi):
    records = _records(tmp_path, phi)
    assert any(r["cards"] for r in records) and any(r["fired"] for r in records) and any(not r["cards"] for r in records)
    url = f"sqlite:///{tmp_path / 'd.db'}"
    Store(url).write(records)
    stored = {row["id"]: row for row in rows(url, "decisions")}
    assert set(stored) == {r["id"] for r in records}
    for record in records:
        row = stored[record["id"]]
        assert (row["service_id"], row["status"], row["detail"], row["phi"]) == (record["service_id"], record["status"], record["detail"], record.get("phi"))
    cards = sorted((c["decision_id"], c["card_uuid"], c["outcome"], c["summary"]) for c in rows(url, "decision_cards"))
    assert cards == sorted((r["id"], c["uuid"], c["outcome"], c.get("summary")) for r in records for c in r["cards"])
    assert len(rows(url, "decision_rules")) == sum(len(r["fired"]) for r in records)


def test_a_batch_written_twice_is_stored_once(tmp_path):
    records = _records(tmp_path, False)
    url = f"sqlite:///{tmp_path / 'd.db'}"
    store = Store(url)
    store.write(records)
    store.write(records + [dict(records[0], id=str(uuid.uuid4()))])
    assert len(rows(url, "decisions")) == len(records) + 1
    cards = [c for r in records for c in r["cards"]]
    assert len(rows(url, "decision_cards")) == len(cards) + len(records[0]["cards"])
