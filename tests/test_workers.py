"""Crash containment: a worker killed by SIGSEGV (what a durable-rules crash looks like) is replaced,
the service keeps answering, and only the requests in flight in that worker fail.

Starts the real `cds-service serve --workers N` (N = 2, and 1: supervised too) on a free loopback port, sends steady load from a
few client threads (one connection per request, so a request can only fail if that worker held
it), kills one worker, and watches the supervisor start a replacement.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from cds_service.tooling import fixtures as fx

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = 4
REQUEST = fx.cds_request([fx.condition("rls"), fx.ferritin(32, days_ago=20)])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def workers_of(parent: int) -> set[int]:
    """Worker processes of the supervisor: its spawned children, not multiprocessing's helpers."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"resource_tracker" not in cmdline:
            found.add(int(entry.name))
    return found


def wait_for(predicate, timeout: float, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return None


@contextmanager
def supervised_service(settings: dict[str, str], workers: int) -> Iterator[tuple[subprocess.Popen, str]]:
    """`cds-service serve --workers N` on a free loopback port with these CDS_* settings, until
    its workers answer; stopped with SIGTERM (then killed) on exit. Yields (process, base URL)."""
    port = free_port()
    env = {**os.environ, "CDS_LOG_LEVEL": "WARNING", **settings}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cds_service", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"

    def healthy():
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200 and len(workers_of(proc.pid)) == workers
        except httpx.HTTPError:
            return False

    try:
        if not wait_for(healthy, 60, 0.25):
            proc.kill()
            pytest.fail("the service did not start: " + proc.stderr.read().decode()[-2000:])
        yield proc, base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(params=[2, 1], ids=["2-workers", "1-worker"])
def server(request, tmp_path):
    workers = request.param
    settings = {"CDS_AUTH_MODE": "off", "CDS_MODE": "production", "CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'decisions.db'}"}
    with supervised_service(settings, workers) as (proc, base):
        yield proc, base, workers


def test_a_segfaulting_worker_is_replaced_and_only_its_in_flight_requests_fail(server):
    proc, base, workers = server
    url = f"{base}/cds-services/rls-iron-patient-view"
    results: list[tuple[float, int | str]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load():
        with httpx.Client(timeout=60, limits=httpx.Limits(max_keepalive_connections=0)) as client:
            while not stop.is_set():
                try:
                    status: int | str = client.post(url, json=REQUEST, headers={"Connection": "close"}).status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                with lock:
                    results.append((time.monotonic(), status))

    threads = [threading.Thread(target=load) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    time.sleep(2)
    before = workers_of(proc.pid)
    victim = min(before)
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGSEGV)
    replacement = wait_for(lambda: (workers_of(proc.pid) - before) or None, 20)
    ready = wait_for(lambda: httpx.get(f"{base}/healthz", timeout=60).status_code == 200, 60)
    time.sleep(2)  # keep the load on the replacement
    stop.set()
    for t in threads:
        t.join(15)

    assert replacement, "the supervisor did not start a replacement worker"
    assert proc.poll() is None, "the supervisor itself died"
    assert ready and len(workers_of(proc.pid)) == workers
    failures = [(t, s) for t, s in results if s != 200]
    successes_after = [t for t, s in results if s == 200 and t > killed_at]
    assert len(results) > 20
    # Only what the dead worker held can fail: at most one request per client thread, all at the kill.
    assert len(failures) <= CLIENTS, failures
    assert all(t - killed_at < 5 for t, _ in failures), failures
    assert all(isinstance(s, str) or s == 200 for _, s in results), "a surviving worker answered an error"
    assert len(successes_after) >= 10
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200


def test_serve_refuses_to_start_on_a_broken_rule_file_instead_of_restarting_workers_in_a_loop(tmp_path):
    import shutil

    from cds_service.engine.ruleset import RULES_DIR

    rules = tmp_path / "rules"
    shutil.copytree(RULES_DIR, rules)
    broken = rules / "oral-iron.rules.yaml"
    broken.write_text(broken.read_text(encoding="utf-8").replace("outcome: start-oral-iron", "outcome: start-oral-iron\n    priority: 1", 1), encoding="utf-8")
    env = {**os.environ, "CDS_AUTH_MODE": "off", "CDS_RULES_DIR": str(rules), "CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'd.db'}"}
    proc = subprocess.run(
        [sys.executable, "-m", "cds_service", "serve", "--host", "127.0.0.1", "--port", str(free_port()), "--workers", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "refusing to start" in proc.stderr and "oral-iron.rules.yaml" in proc.stderr
