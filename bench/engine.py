"""Per-engine evaluation cost, in microseconds: for `make bench` and for `python -m cds_service.engine.bench`.

The engine sees one fixed set of singleton facts whatever the size of the chart (the mapping layer
reduces 300 observations to "the latest current ferritin"), so its cost should not grow with the
chart: the script measures a typical request and a 300-observation chart to show it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any, Mapping

from cds_service.engine import RuleEngine, available_engines, normalize_facts
from cds_service.engine.ruleset import load_all_rulesets


def engine_cost_us(profile: str, facts: Mapping[str, Mapping[str, Any]], engine: str, n: int = 2000,
                   part: str = "evaluate", repeats: int = 5) -> float:
    """Median over `repeats` runs of the mean microseconds per evaluation of `facts` (n evaluations each).

    part="evaluate": the whole engine boundary (type checks, evaluator, precedence, why-not);
    part="fire": the evaluator alone (what differs between durable-rules and the reference).
    """
    rule_engine = RuleEngine(load_all_rulesets()[profile], engine)
    try:
        normal = normalize_facts(facts)
        call = (lambda: rule_engine.evaluate(facts)) if part == "evaluate" else (lambda: rule_engine.evaluator.fired(normal))
        for _ in range(min(n, 200)):  # warm up
            call()
        runs = []
        for _ in range(repeats):
            started = time.perf_counter()
            for _ in range(n):
                call()
            runs.append((time.perf_counter() - started) / n * 1e6)
        return statistics.median(runs)
    finally:
        rule_engine.close()


def facts_of(request: Mapping[str, Any], profile: str = "article") -> dict[str, dict[str, Any]]:
    """The engine facts the real pipeline computes for a CDS Hooks request (no HTTP, no FHIR fetch)."""
    from cds_service.runtime import build_runtime
    from cds_service.settings import Settings
    from cds_service.tooling.fixtures import DEFAULT_NOW
    from cds_service.tooling.offline import evaluate_document

    with tempfile.TemporaryDirectory() as scratch:
        runtime = build_runtime(Settings(auth_mode="off", rule_engine="python", database_url=f"sqlite:///{scratch}/bench.db"))
        evaluation = evaluate_document(runtime, dict(request), profile=profile, now=DEFAULT_NOW)
        return evaluation.facts.to_engine()


def _requests() -> dict[str, dict[str, Any]]:
    try:  # the benchmark's own charts, when run from the repository
        from bench.charts import large_chart_request, typical_request

        return {"typical request": typical_request(), "300-observation chart": large_chart_request()}
    except ImportError:
        from cds_service.tooling import fixtures as fx

        typical = fx.cds_request([fx.condition("rls"), fx.ferritin(32, days_ago=20), fx.hemoglobin(12.8, days_ago=20), fx.tsat(18, days_ago=20)])
        large = fx.cds_request([fx.condition("rls")] + [fx.ferritin(20 + i % 300, days_ago=1 + i) for i in range(300)])
        return {"typical request": typical, "300-observation chart": large}


def report(n: int = 2000, profiles: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Rows of {profile, request, engine, evaluate_us, fire_us} for every profile, request and engine."""
    rows = []
    for profile in profiles or tuple(load_all_rulesets()):
        for label, request in _requests().items():
            facts = facts_of(request, profile)
            for engine in available_engines():
                rows.append({
                    "profile": profile,
                    "request": label,
                    "engine": engine,
                    "evaluate_us": round(engine_cost_us(profile, facts, engine, n, "evaluate"), 1),
                    "fire_us": round(engine_cost_us(profile, facts, engine, n, "fire"), 1),
                })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="microseconds per rule evaluation, per engine")
    parser.add_argument("-n", type=int, default=2000, help="evaluations per timing run")
    parser.add_argument("--profile", action="append", help="profile(s) to measure (default: all)")
    args = parser.parse_args()
    print(f"{'profile':<10} {'request':<22} {'engine':<8} {'evaluate us':>12} {'fire us':>9}")
    for row in report(args.n, tuple(args.profile) if args.profile else None):
        print(f"{row['profile']:<10} {row['request']:<22} {row['engine']:<8} {row['evaluate_us']:>12} {row['fire_us']:>9}")


if __name__ == "__main__":
    main()
