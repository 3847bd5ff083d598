"""On SQLite the decision log is written by a child process of the worker (cds_service.audit.writing).

What must hold: every record still reaches the database, a writer process that dies is replaced
without losing the batch it held, Ctrl-C or a TERM to the process group does not cut off the
last flush, and nothing is left running after the app stops.
"""

from __future__ import annotations

import gc
import io
import os
import signal
import time

import pytest

from cds_service import collector
from cds_service import fixtures as fx
from cds_service.audit.records import decision_record, now_utc
from cds_service.audit.writing import ProcessWriter, ThreadWriter, receive_frame, send_frame, serve
from cds_service.offline import evaluate_document
from tests.test_audit_support import SERVICE, decision_log, rows, running, wait_until

LOW_FERRITIN = [fx.condition("rls"), fx.ferritin(31.7, days_ago=20)]


def _decide(client) -> str:
    response = client.post(SERVICE, json=fx.cds_request(LOW_FERRITIN))
    assert response.status_code == 200
    return response.json()["extension"]["decision-id"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'db' / 'decisions.db'}"


def test_records_are_written_by_a_child_process_that_ends_with_the_app(tmp_path, sqlite_url):
    with running(tmp_path, sqlite_url) as client:
        log = decision_log(client)
        ids = [_decide(client) for _ in range(3)]
        assert wait_until(lambda: log.backlog == 0)
        assert isinstance(log._writer, ProcessWriter)
        pid = log._writer.pid
        assert pid is not None and pid != os.getpid() and _alive(pid)
    assert {r["id"] for r in rows(sqlite_url, "decisions")} == set(ids)
    assert not _alive(pid), "the writer process ends when the app stops"


def test_a_writer_process_that_dies_is_replaced_and_no_record_is_lost(tmp_path, sqlite_url):
    with running(tmp_path, sqlite_url) as client:
        log = decision_log(client)
        ids = [_decide(client)]
        assert wait_until(lambda: log.backlog == 0)
        first = log._writer.pid
        os.kill(first, signal.SIGKILL)
        ids += [_decide(client) for _ in range(3)]
        assert wait_until(lambda: log.backlog == 0), "the batch is retried with a new writer process"
        assert log._writer.pid not in (None, first)
    assert {r["id"] for r in rows(sqlite_url, "decisions")} == set(ids)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_writer_process_outlives_a_signal_to_its_process_group(tmp_path, sqlite_url, signum):
    """Ctrl-C in `make serve`, or a TERM to the group, reaches the child too; the worker still
    needs it for its last flush, so the child ends only when the worker closes its stdin."""
    with running(tmp_path, sqlite_url) as client:
        log = decision_log(client)
        ids = [_decide(client)]
        assert wait_until(lambda: log.backlog == 0)
        pid = log._writer.pid
        os.kill(pid, signum)
        time.sleep(0.2)
        assert _alive(pid)
        ids.append(_decide(client))
        assert wait_until(lambda: log.backlog == 0)
        assert log._writer.pid == pid
    assert {r["id"] for r in rows(sqlite_url, "decisions")} == set(ids)


def test_the_thread_writer_is_kept_as_an_option(tmp_path, sqlite_url):
    with running(tmp_path, sqlite_url, decision_log_process=False) as client:
        log = decision_log(client)
        ids = [_decide(client) for _ in range(2)]
        assert wait_until(lambda: log.backlog == 0)
        assert isinstance(log._writer, ThreadWriter)
    assert {r["id"] for r in rows(sqlite_url, "decisions")} == set(ids)


def _nice(pid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, pid)


WORKER_NICE = _nice(0)
YIELDING_NICE = min(19, WORKER_NICE + 10)  # the default CDS_DECISION_LOG_WRITER_NICE


def test_the_writer_process_yields_the_cpu_while_it_keeps_up(tmp_path, sqlite_url):
    with running(tmp_path, sqlite_url) as client:
        log = decision_log(client)
        _decide(client)
        assert wait_until(lambda: log.backlog == 0)
        assert log._writer.yielding
        assert _nice(log._writer.pid) == YIELDING_NICE


def test_a_writer_process_that_falls_behind_is_replaced_by_one_at_the_workers_priority(tmp_path, sqlite_url):
    """A lowered priority cannot be raised again without privileges: a new child takes over, at
    the worker's priority, keeps it while `full_priority_for` lasts, then yields again."""
    with running(tmp_path, sqlite_url) as client:
        log = decision_log(client)
        writer = log._writer
        ids = [_decide(client)]
        assert wait_until(lambda: log.backlog == 0)
        yielding_pid = writer.pid
        log.batch_size = 1
        writer.catch_up_at = 3
        writer.full_priority_for = 3600.0
        with writer._lock:  # hold the writer while five decisions queue up
            ids += [_decide(client) for _ in range(5)]
        assert wait_until(lambda: log.backlog == 0)
        assert writer.pid != yielding_pid and not writer.yielding
        assert _nice(writer.pid) == WORKER_NICE
        assert wait_until(lambda: not _alive(yielding_pid)), "the yielding child ends when replaced"

        catching_up_pid = writer.pid
        ids.append(_decide(client))
        assert wait_until(lambda: log.backlog == 0)
        assert not writer.yielding, "full priority is kept for full_priority_for seconds"

        writer._full_priority_until = 0.0
        ids.append(_decide(client))
        assert wait_until(lambda: log.backlog == 0)
        assert writer.yielding and writer.pid == catching_up_pid
        assert _nice(writer.pid) == YIELDING_NICE
    assert {r["id"] for r in rows(sqlite_url, "decisions")} == set(ids)


def test_a_priority_that_cannot_be_lowered_is_left_as_it_is(tmp_path, sqlite_url, monkeypatch, caplog):
    def not_permitted(*_args):
        raise PermissionError("setpriority")

    monkeypatch.setattr(os, "setpriority", not_permitted)
    with running(tmp_path, sqlite_url) as client:
        log = decision_log(client)
        ids = [_decide(client) for _ in range(2)]
        assert wait_until(lambda: log.backlog == 0)
        assert not log._writer.yielding and _nice(log._writer.pid) == WORKER_NICE
    assert {r["id"] for r in rows(sqlite_url, "decisions")} == set(ids)
    assert "writer priority not lowered (PermissionError)" in caplog.text


def test_a_writer_nice_of_zero_keeps_the_workers_priority(tmp_path, sqlite_url):
    with running(tmp_path, sqlite_url, decision_log_writer_nice=0) as client:
        log = decision_log(client)
        _decide(client)
        assert wait_until(lambda: log.backlog == 0)
        assert not log._writer.yielding and _nice(log._writer.pid) == WORKER_NICE


@pytest.fixture
def default_collector():
    """The collector as a fresh Python process has it; restored afterwards."""
    thresholds = gc.get_threshold()
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*thresholds)


def _serve(database_url: str, records: list[dict]) -> list[dict]:
    source, sink = io.BytesIO(), io.BytesIO()
    send_frame(source, {"database_url": database_url, "log_level": "WARNING", "log_json": True})
    send_frame(source, {"records": records})
    source.seek(0)
    serve(source, sink)
    sink.seek(0)
    return [receive_frame(sink)]


def test_the_writer_process_settles_its_collector_once_the_database_is_open(tmp_path, sqlite_url, default_collector):
    """Records are trees freed by reference counting: collecting the youngest generation every
    700 allocations cost the writer a fifth of its CPU per record (docs/performance.md)."""
    with running(tmp_path, sqlite_url) as client:
        runtime = client.app.state.runtime
        record = decision_record(evaluate_document(runtime, fx.cds_request(LOW_FERRITIN)), runtime.settings, now_utc())
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    assert _serve(sqlite_url, [record]) == [{"rejected": []}]
    assert gc.get_threshold() == collector.THRESHOLDS
    assert gc.get_freeze_count() > 0
    assert [r["id"] for r in rows(sqlite_url, "decisions")] == [record["id"]]


def test_the_writer_process_leaves_its_collector_alone_while_the_database_is_unreachable(tmp_path, default_collector):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    (answer,) = _serve(f"sqlite:///{blocked / 'decisions.db'}", [{"kind": "decision", "id": "x"}])
    assert "error" in answer
    assert gc.get_threshold() == (700, 10, 10)


def test_frames_end_cleanly_only_between_frames():
    stream = io.BytesIO()
    send_frame(stream, {"records": [{"id": "a"}]})
    whole = stream.getvalue()
    assert receive_frame(io.BytesIO(whole)) == {"records": [{"id": "a"}]}
    assert receive_frame(io.BytesIO(b"")) is None
    for cut in (2, len(whole) - 1):
        with pytest.raises(EOFError):
            receive_frame(io.BytesIO(whole[:cut]))


@pytest.mark.parametrize("process", [True, False], ids=["process", "thread"])
def test_a_record_that_is_not_json_is_set_aside_and_the_others_are_written(tmp_path, sqlite_url, process):
    """Neither writer may retry a whole batch for ever because one record cannot be stored."""
    with running(tmp_path, sqlite_url, decision_log_process=process) as client:
        log = decision_log(client)
        log._enqueue([{"kind": "decision", "id": "not-json", "detail": {"values": {1, 2}}}])
        good = _decide(client)
        assert wait_until(lambda: log.backlog == 0)
    assert [r["id"] for r in rows(sqlite_url, "decisions")] == [good]
    rejected = (tmp_path / "spill" / "decision-log.rejected.jsonl").read_text()
    assert '"not-json"' in rejected
