"""The SQLite bulk insert (audit/sqlite_bulk.py) stores exactly what SQLAlchemy's inserts store.

Realistic decision records (cards, fired rules with banded facts, PHI mode on and off) are
written once through the bulk path and once through SQLAlchemy's executemany into two fresh
SQLite files; every table must read back the same, row for row.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from cds_service import fixtures as fx
from cds_service.audit.records import decision_record
from cds_service.audit.store import Store
from cds_service.offline import evaluate_document
from cds_service.runtime import build_runtime
from cds_service.settings import Settings
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


def _without_ids(table_rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "id" or isinstance(v, str)} for row in table_rows]


@pytest.mark.parametrize("bound", [False, True], ids=["json_each", "bound rows"])
@pytest.mark.parametrize("phi", [False, True], ids=["bands", "phi"])
def test_bulk_rows_read_back_like_sqlalchemy_rows(tmp_path, phi, bound):
    records = _records(tmp_path, phi)
    assert any(r["cards"] for r in records) and any(r["fired"] for r in records) and any(not r["cards"] for r in records)
    bulk_url, core_url = f"sqlite:///{tmp_path / 'bulk.db'}", f"sqlite:///{tmp_path / 'core.db'}"
    bulk = Store(bulk_url)
    bulk.bind_rows = bound
    bulk.write(records)
    core = Store(core_url)
    core.ensure_ready()
    with core.engine.begin() as connection:
        core._write_decisions(connection, records)
    for table in ("decisions", "decision_cards", "decision_rules"):
        bulk_rows, core_rows = _without_ids(rows(bulk_url, table)), _without_ids(rows(core_url, table))
        assert bulk_rows == core_rows, table
        assert len(bulk_rows) >= len(records) if table == "decisions" else True


@pytest.mark.parametrize("bound", [False, True], ids=["json_each", "bound rows"])
def test_a_batch_written_twice_is_stored_once(tmp_path, bound):
    records = _records(tmp_path, False)
    url = f"sqlite:///{tmp_path / 'd.db'}"
    store = Store(url)
    store.bind_rows = bound
    store.write(records)
    store.write(records + [dict(records[0], id=str(uuid.uuid4()))])
    assert len(rows(url, "decisions")) == len(records) + 1
    cards = [c for r in records for c in r["cards"]]
    assert len(rows(url, "decision_cards")) == len(cards) + len(records[0]["cards"])


def test_without_sqlite_json_functions_records_are_written_row_by_row(tmp_path):
    records = _records(tmp_path, False)
    bulk_url, plain_url = f"sqlite:///{tmp_path / 'bulk.db'}", f"sqlite:///{tmp_path / 'plain.db'}"
    bulk = Store(bulk_url)
    bulk.write(records)
    assert bulk.bulk
    plain = Store(plain_url)
    plain.ensure_ready()
    plain.json1 = False  # as on an SQLite built without JSON1
    assert not plain.bulk
    plain.write(records)
    for table in ("decisions", "decision_cards", "decision_rules"):
        assert _without_ids(rows(bulk_url, table)) == _without_ids(rows(plain_url, table)), table
