"""`make loadtest`: 8 concurrent clients against `cds-service serve` on loopback for 30 s.

Pass criteria: zero errors (every answer is the expected status), and resident memory of the
server flat within 10 % after warm-up (no leak per request). The server runs with auth off in
development mode on 127.0.0.1 only, its decision log in a throw-away directory; it is stopped
with SIGTERM at the end and must exit cleanly (graceful shutdown). Prints a summary; exits 1
on any failure.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from cds_service.tooling import fixtures as fx

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).parent / "cds-service"


@dataclass
class Call:
    """One kind of request in the mix: method, path, body and the status it must get."""

    name: str
    method: str
    path: str
    body: dict[str, Any] | None = None
    expect: int = 200
    weight: int = 1


def request_mix() -> list[Call]:
    """What an EHR sends in a day: mostly patient-view, some order hooks, feedback, discovery."""
    pv = "/cds-services/rls-iron-patient-view"
    aasm = "/cds-services/rls-iron-aasm2024-patient-view"
    chart = [fx.condition("rls"), fx.hemoglobin(13.1, days_ago=20), fx.tsat(22, days_ago=20)]
    old_oral = fx.medication_request("ferrous-sulfate", days_ago=120)
    drafts = [fx.draft_order("ferrous-sulfate")]
    feedback = {"feedback": [{"card": str(uuid.uuid4()), "outcome": "accepted", "outcomeTimestamp": "2026-11-26T09:00:00Z"}]}
    big_chart = [fx.condition("rls"), *[fx.ferritin(40 + i % 30, days_ago=20 + 7 * i) for i in range(150)], *[fx.hemoglobin(12 + (i % 3) / 2, days_ago=25 + 9 * i) for i in range(80)]]
    return [
        Call("patient-view low ferritin", "POST", pv, fx.cds_request([*chart, fx.ferritin(32, days_ago=20)]), weight=6),
        Call("patient-view normal ferritin", "POST", pv, fx.cds_request([*chart, fx.ferritin(180, days_ago=20)]), weight=3),
        Call("patient-view no labs", "POST", pv, fx.cds_request([fx.condition("rls")]), weight=2),
        Call("patient-view oral failed", "POST", pv, fx.cds_request([*chart, old_oral, fx.ferritin(38, days_ago=10)]), weight=2),
        Call("patient-view aasm", "POST", aasm, fx.cds_request([*chart, fx.ferritin(90, days_ago=20)]), weight=2),
        Call("patient-view large chart", "POST", pv, fx.cds_request(big_chart), weight=1),
        Call("order-select", "POST", "/cds-services/rls-iron-order-select", fx.cds_request([*chart, fx.ferritin(32, days_ago=20)], hook="order-select", drafts=drafts), weight=2),
        Call("order-sign", "POST", "/cds-services/rls-iron-order-sign", fx.cds_request([*chart, fx.ferritin(32, days_ago=20)], hook="order-sign", drafts=drafts), weight=2),
        Call("feedback", "POST", pv + "/feedback", feedback, weight=1),
        Call("discovery", "GET", "/cds-services", weight=1),
        Call("invalid request", "POST", pv, {"hook": "patient-view"}, expect=400, weight=1),
    ]


def fresh(call: Call) -> dict[str, Any] | None:
    """A copy with a new hookInstance / card uuid, as a real EHR would send."""
    if call.body is None:
        return None
    body = copy.deepcopy(call.body)
    if "hookInstance" in body:
        body["hookInstance"] = str(uuid.uuid4())
    for item in body.get("feedback", []):
        item["card"] = str(uuid.uuid4())
    return body


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    total: int = 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_tree(pid: int) -> list[int]:
    """The server and its descendants (uvicorn workers, if any), from /proc."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                queue.extend(int(child) for child in task.read_text().split())
            except OSError:
                pass
    return found


def rss_kb(pid: int) -> int:
    total = 0
    for each in process_tree(pid):
        try:
            match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{each}/status").read_text())
        except OSError:
            continue
        total += int(match.group(1)) if match else 0
    return total


def start_server(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env.update(
        {
            "CDS_MODE": "development",
            "CDS_AUTH_MODE": "off",
            "CDS_DATABASE_URL": f"sqlite:///{workdir / 'decisions.db'}",
            "CDS_LOG_LEVEL": "INFO",  # production's level: the access lines are part of the cost
        }
    )
    log = open(workdir / "server.log", "wb")
    return subprocess.Popen(
        [str(CLI), "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} during start-up")
        try:
            if httpx.get(base + "/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server not ready in time")


async def client(base: str, calls: list[Call], weights: list[int], stop_at: float, stats: Stats, seed: int) -> None:
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=base, timeout=30.0) as http:
        while time.monotonic() < stop_at:
            call = rng.choices(calls, weights)[0]
            started = time.perf_counter()
            try:
                response = await http.request(call.method, call.path, json=fresh(call))
                status = response.status_code
            except httpx.HTTPError as exc:
                stats.errors.append(f"{call.name}: {type(exc).__name__}")
                continue
            finally:
                stats.total += 1
            stats.latencies.setdefault(call.name, []).append(time.perf_counter() - started)
            if status != call.expect:
                stats.errors.append(f"{call.name}: HTTP {status}")


async def sample_memory(pid: int, stop_at: float, samples: list[tuple[float, int]], started: float) -> None:
    while time.monotonic() < stop_at:
        samples.append((time.monotonic() - started, rss_kb(pid)))
        await asyncio.sleep(0.5)


async def run_load(base: str, pid: int, clients: int, seconds: float) -> tuple[Stats, list[tuple[float, int]]]:
    calls = request_mix()
    weights = [c.weight for c in calls]
    stats = Stats()
    samples: list[tuple[float, int]] = []
    started = time.monotonic()
    stop_at = started + seconds
    await asyncio.gather(
        sample_memory(pid, stop_at, samples, started),
        *(client(base, calls, weights, stop_at, stats, seed) for seed in range(clients)),
    )
    return stats, samples


async def terminate_during_requests(base: str, proc: subprocess.Popen[bytes], count: int) -> list[int | str]:
    """Graceful shutdown: SIGTERM while `count` large requests are being answered; all must finish."""
    body = fx.cds_request([fx.condition("rls"), *[fx.ferritin(40 + i % 30, days_ago=20 + 7 * i) for i in range(300)]])
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(base_url=base, timeout=30.0, limits=limits) as http:
        await asyncio.gather(*(http.get("/healthz") for _ in range(count)))  # connections open

        async def one() -> int | str:
            try:
                return (await http.post("/cds-services/rls-iron-patient-view", json={**body, "hookInstance": str(uuid.uuid4())})).status_code
            except httpx.HTTPError as exc:
                return type(exc).__name__

        tasks = [asyncio.create_task(one()) for _ in range(count)]
        await asyncio.sleep(0.05)
        os.killpg(proc.pid, signal.SIGTERM)
        return list(await asyncio.gather(*tasks))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=None, help="seconds excluded from the memory check (default: a third)")
    parser.add_argument("--rss-tolerance", type=float, default=0.10)
    args = parser.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else args.seconds / 3

    with tempfile.TemporaryDirectory(prefix="cds-loadtest-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start_server(port, workdir)
        failures: list[str] = []
        in_flight: list[int | str] = []
        try:
            wait_ready(base, proc)
            stats, samples = asyncio.run(run_load(base, proc.pid, args.clients, args.seconds))
            in_flight = asyncio.run(terminate_during_requests(base, proc, args.clients))
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                exit_code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                exit_code = None
        server_log = (workdir / "server.log").read_text(errors="replace")

    after = [kb for t, kb in samples if t >= warmup]
    baseline = after[0] if after else 0
    peak = max(after) if after else 0
    growth = (peak - baseline) / baseline if baseline else 0.0
    all_latencies = [v for values in stats.latencies.values() for v in values]

    print(f"load test: {args.clients} clients x {args.seconds:g} s against cds-service serve on {base}")
    print(f"  requests {stats.total}  ({stats.total / args.seconds:.0f}/s)  errors {len(stats.errors)}")
    if all_latencies:
        print(f"  latency ms  p50 {1000 * statistics.median(all_latencies):.1f}  p95 {1000 * percentile(all_latencies, 0.95):.1f}  p99 {1000 * percentile(all_latencies, 0.99):.1f}")
    for name, values in sorted(stats.latencies.items()):
        print(f"    {name:<30} n={len(values):<6} p50 {1000 * statistics.median(values):7.1f} ms  p99 {1000 * percentile(values, 0.99):7.1f} ms")
    print(f"  RSS after {warmup:g} s warm-up: start {baseline / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB, growth {100 * growth:.1f} %")
    answered = sum(1 for status in in_flight if status == 200)
    shutdown_complete = "Application shutdown complete" in server_log
    print(f"  SIGTERM with {len(in_flight)} requests in flight: {answered} answered 200; exit code {exit_code}; lifespan shutdown {'complete' if shutdown_complete else 'NOT complete'}")

    if stats.errors:
        failures.append(f"{len(stats.errors)} errors, e.g. {sorted(set(stats.errors))[:5]}")
    if stats.total == 0:
        failures.append("no request completed")
    if growth > args.rss_tolerance:
        failures.append(f"RSS grew {100 * growth:.1f} % after warm-up (tolerance {100 * args.rss_tolerance:.0f} %)")
    # uvicorn re-raises the signal after its graceful shutdown: -SIGTERM is a clean exit too.
    if exit_code not in (0, -signal.SIGTERM) or not shutdown_complete:
        failures.append(f"server did not shut down cleanly (exit code {exit_code})")
    if answered != len(in_flight):
        failures.append(f"requests in flight at SIGTERM were dropped: {in_flight}")
    if "Traceback" in server_log:
        failures.append("the server log has a traceback")
    for failure in failures:
        print(f"FAIL: {failure}")
    if not failures:
        print("PASS")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
