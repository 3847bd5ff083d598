"""Shared fixtures of the decision-log tests (no tests here): databases, apps, outages, DB reads.

Storage tests run on SQLite and on PostgreSQL. PostgreSQL tests are marked `postgres` and skip
unless CDS_TEST_POSTGRES_URL is set (`.ci/run` sets it, and CDS_TEST_REQUIRE_POSTGRES, which turns
the skip into a failure so CI cannot pass without them).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator
from unittest.mock import patch

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from cds_service.audit.tables import metadata
from cds_service.engine.ruleset import load_all_rulesets
from tests.conftest import make_app

SERVICE = "/cds-services/rls-iron-patient-view"
DB_KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def postgres_url() -> str:
    url = os.environ.get("CDS_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CDS_TEST_REQUIRE_POSTGRES"):
            pytest.fail("CDS_TEST_REQUIRE_POSTGRES is set but CDS_TEST_POSTGRES_URL is not")
        pytest.skip("CDS_TEST_POSTGRES_URL is not set (see .ci/run)")
    return url


def reset_postgres(url: str) -> None:
    """Drop the decision-log tables so every test starts from an empty, unmigrated database."""
    engine = create_engine(url)
    try:
        metadata.drop_all(engine)
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    finally:
        engine.dispose()


def database_url_for(kind: str, tmp_path: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'decisions.db'}"
    url = postgres_url()
    reset_postgres(url)
    return url


@pytest.fixture(params=DB_KINDS)
def db_url(request, tmp_path: Path) -> str:
    return database_url_for(request.param, tmp_path)


_RULESETS: dict[str, Any] = {}


def _cached_rulesets(rules_dir: Path) -> Any:
    """Rule files parsed once per test session (they are immutable values): these tests build many apps."""
    key = str(rules_dir)
    if key not in _RULESETS:
        _RULESETS[key] = load_all_rulesets(rules_dir)
    return _RULESETS[key]


def build_app(tmp_path: Path, database_url: str, **overrides: Any):
    """An app on `database_url`, fixed clock, fast retries, spill file under tmp_path/spill."""
    with patch("cds_service.runtime.load_all_rulesets", _cached_rulesets):
        app = make_app(tmp_path, database_url=database_url, **overrides)
    log = app.state.runtime.decision_log
    log.spill.directory = tmp_path / "spill"
    log.retry_initial = 0.05
    log.retry_max = 0.2
    log.flush_timeout = 5.0
    return app


@contextmanager
def running(tmp_path: Path, database_url: str, **overrides: Any) -> Iterator[TestClient]:
    """A client whose exit stops the app, which flushes the decision log."""
    with TestClient(build_app(tmp_path, database_url, **overrides)) as client:
        yield client


def decision_log(client: TestClient):
    return client.app.state.runtime.decision_log


def rows(database_url: str, table: str) -> list[dict[str, Any]]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return [dict(r) for r in connection.execute(select(metadata.tables[table])).mappings()]
    finally:
        engine.dispose()


def all_text(database_url: str) -> str:
    """Every value of every decision-log table, as one string: for PHI scans."""
    parts = []
    for table in ("decisions", "decision_cards", "decision_rules", "feedback"):
        for row in rows(database_url, table):
            parts.append(json.dumps(row, default=str))
    return "\n".join(parts)


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Poll until true (the writer works in the background); False when it never becomes true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def feedback_body(card: str, outcome: str = "accepted", **extra: Any) -> dict[str, Any]:
    item = {"card": card, "outcome": outcome, "outcomeTimestamp": "2026-11-26T09:05:00Z", **extra}
    return {"feedback": [item]}


class TcpProxy:
    """A loopback TCP proxy to PostgreSQL that can be switched off (connections refused) and on."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.up = False
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def set_up(self, up: bool) -> None:
        self.up = up
        if not up:
            with self.lock:
                for s in self.open:
                    try:
                        s.close()
                    except OSError:
                        pass
                self.open.clear()

    def close(self) -> None:
        self.closed = True
        self.set_up(False)
        self.server.close()


class Outage:
    """A database that starts unavailable; `restore()` makes it available at the same URL."""

    def __init__(self, url: str, restore: Callable[[], None], cleanup: Callable[[], None] = lambda: None, real_url: str | None = None) -> None:
        self.url = url
        self.real_url = real_url or url
        self.restore = restore
        self.cleanup = cleanup


@pytest.fixture(params=DB_KINDS)
def outage(request, tmp_path: Path) -> Iterator[Outage]:
    if request.param == "sqlite":
        # Running as root, a read-only directory would not stop us: a file where the database
        # directory should be does.
        blocker = tmp_path / "dbdir"
        blocker.write_text("not a directory")
        yield Outage(f"sqlite:///{blocker / 'decisions.db'}", restore=blocker.unlink)
        return
    real = postgres_url()
    reset_postgres(real)
    parsed = make_url(real)
    proxy = TcpProxy(parsed.host or "127.0.0.1", parsed.port or 5432)
    proxied = parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    try:
        yield Outage(proxied, restore=lambda: proxy.set_up(True), real_url=real)
    finally:
        proxy.close()
