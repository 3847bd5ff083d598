"""Every known durable-rules failure mode, each run in a child process.

Several of these crash the whole interpreter (segmentation fault) when the adapter gets them
wrong, so each scenario runs in its own `python -c` child: the test fails on a crash (negative
exit code: killed by a signal), a hang (timeout) or a wrong answer (the child compares the
durable answer with the reference evaluator and prints JSON). See docs/engine.md and
cds_service/engine/durable_engine.py for the traps and the guards.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cds_service.engine import available_engines
from cds_service.engine.durable_engine import distinct_sid_pool, fnv1a_32

pytestmark = pytest.mark.skipif("durable" not in available_engines(), reason="durable-rules does not import here")

ROOT = Path(__file__).resolve().parents[1]

PRELUDE = """
import json, random, sys, threading
from dataclasses import replace
from cds_service.engine import EngineError, RuleEngine, normalize_facts
from cds_service.engine.durable_engine import DurableEvaluator, fnv1a_32
from cds_service.engine.python_engine import PythonEvaluator
from cds_service.engine.ruleset import load_all_rulesets
from fhir_mappings.facts import FactSet, ConditionsFact, FerritinFact, HemoglobinFact, OralIronFact, IvIronFact, TsatFact

RULESETS = load_all_rulesets()
RS = RULESETS["article"]

def facts(**records):
    return normalize_facts(replace(FactSet(), **records).to_engine())

LOW = facts(conditions=ConditionsFact(rls=True), ferritin=FerritinFact(current=True, value_ug_per_l=32.0, days_ago=20))
HIGH = facts(ferritin=FerritinFact(current=True, value_ug_per_l=420.0, days_ago=3), oral_iron=OralIronFact(active=True, on_record=True, days=40),
             tsat=TsatFact(current=True, value_pct=52.0, days_ago=3))
NOTHING = facts()

def out(**answer):
    print(json.dumps(answer))
"""


def run_child(body: str, timeout: float = 90) -> dict:
    """Run PRELUDE + body in a fresh interpreter; fail on a signal, a hang or a non-zero exit."""
    code = PRELUDE + textwrap.dedent(body)
    try:
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the engine hung (no answer within {timeout} s)")
    assert proc.returncode >= 0, f"the engine crashed the process (signal {-proc.returncode})\n{proc.stderr[-2000:]}"
    assert proc.returncode == 0, f"child failed with exit code {proc.returncode}\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_no_rule_fired_deletes_the_session_without_crashing():
    answer = run_child("""
        d, p = DurableEvaluator(RS), PythonEvaluator(RS)
        answers = [d.fired(NOTHING) for _ in range(50)]
        out(durable=answers[-1], python=p.fired(NOTHING), distinct=len({tuple(a) for a in answers}), free=d.free, pool=len(d.pool), retired=len(d.retired))
    """)
    assert answer["durable"] == answer["python"] == []
    assert answer["distinct"] == 1
    assert answer["free"] == answer["pool"] and answer["retired"] == 0


def test_empty_fact_list_is_never_asserted_as_an_empty_batch():
    answer = run_child("""
        d, p = DurableEvaluator(RS), PythonEvaluator(RS)
        batches = []
        original = d._host.assert_facts
        def spy(name, facts):
            batches.append(len(facts))
            return original(name, facts)
        d._host.assert_facts = spy
        out(durable=d.fired({}), python=p.fired({}), engine=RuleEngine(RS, "durable").evaluate({}).fired_ids(), batches=batches, free=d.free, pool=len(d.pool))
    """)
    assert answer["durable"] == answer["python"]
    assert answer["batches"] == [1]
    assert answer["free"] == answer["pool"]


def test_oversized_fact_is_refused_with_engine_error_not_a_crash():
    answer = run_child("""
        engine = RuleEngine(RS, "durable")
        wide = dict(LOW)
        wide["ferritin"] = {**LOW["ferritin"], **{f"extra_{i}": i for i in range(300)}}
        try:
            engine.evaluate(wide)
            refused_by_schema = False
        except EngineError:
            refused_by_schema = True
        d = engine.evaluator
        d._fields = tuple(("ferritin", f"extra_{i}") for i in range(300))  # as if the rules read 300 fields
        try:
            d.fired(wide)
            refused_by_adapter = False
        except EngineError as exc:
            refused_by_adapter = "254" in str(exc)
        out(refused_by_schema=refused_by_schema, refused_by_adapter=refused_by_adapter, free=d.free, pool=len(d.pool), retired=len(d.retired))
    """)
    assert answer["refused_by_schema"] and answer["refused_by_adapter"]
    assert answer["free"] == answer["pool"] and answer["retired"] == 0


def test_exponent_form_numbers_are_normalised_or_refused_never_error_204():
    answer = run_child("""
        engine, reference = RuleEngine(RS, "durable"), RuleEngine(RS, "python")
        tiny = {**LOW, "ferritin": {**LOW["ferritin"], "value_ug_per_l": 1e-05}}
        small = {**LOW, "ferritin": {**LOW["ferritin"], "value_ug_per_l": 3.2e-07, "days_ago": 0}}
        results = {}
        for name, f in (("tiny", tiny), ("small", small)):
            results[name] = [engine.evaluate(f).fired_ids(), reference.evaluate(f).fired_ids()]
        refused = []
        for big in (1e16, 2.5e20, 10**16):
            try:
                engine.evaluate({**LOW, "ferritin": {**LOW["ferritin"], "value_ug_per_l": big}})
            except EngineError:
                refused.append(True)
        d = engine.evaluator
        try:  # straight to the adapter, past normalize_facts
            d.fired({**LOW, "ferritin": {**LOW["ferritin"], "value_ug_per_l": 1e-05}})
            adapter_refused = False
        except EngineError:
            adapter_refused = True
        try:  # a parameter that JSON would print as 1e-05
            DurableEvaluator(replace(RS, parameters={**RS.parameters, "ferritin_low": 1e-05}))
            param_refused = False
        except EngineError:
            param_refused = True
        out(results=results, refused=len(refused), adapter_refused=adapter_refused, param_refused=param_refused, free=d.free, pool=len(d.pool))
    """)
    for durable, python in answer["results"].values():
        assert durable == python
        assert "start-oral-iron" in durable  # 0.0 ug/L is still a (very) low ferritin
    assert answer["refused"] == 3
    assert answer["adapter_refused"] and answer["param_refused"]
    assert answer["free"] == answer["pool"]


def test_negation_gives_the_reference_answer_whatever_the_fact_order():
    answer = run_child("""
        from cds_service.engine.ruleset import iter_leaves
        def uses_none(c):
            return "none" in c or any(uses_none(x) for k in ("all", "any") for x in c.get(k, []))
        rng = random.Random(7)
        checked = mismatches = 0
        for profile, rs in RULESETS.items():
            d, p = DurableEvaluator(rs), PythonEvaluator(rs)
            negated = [r.id for r in rs.rules if uses_none(r.when)]
            base_sets = [LOW, HIGH, NOTHING]
            for _ in range(60):
                f = {t: dict(r) for t, r in LOW.items()}
                for t, record in f.items():
                    for k, v in record.items():
                        if isinstance(v, bool):
                            record[k] = rng.random() < 0.5
                base_sets.append(normalize_facts(f))
            for f in base_sets:
                expected = p.fired(f)
                for _ in range(4):  # the same facts, types and fields in a shuffled order
                    types = list(f.items()); rng.shuffle(types)
                    shuffled = {}
                    for t, record in types:
                        items = list(record.items()); rng.shuffle(items)
                        shuffled[t] = dict(items)
                    checked += 1
                    mismatches += d.fired(shuffled) != expected
        out(checked=checked, mismatches=mismatches, negated=len(negated))
    """)
    assert answer["checked"] > 200
    assert answer["mismatches"] == 0


def test_colliding_session_ids_exist_and_the_pool_never_holds_a_pair():
    # A 32-bit hash collides by the birthday bound after ~2^16 ids: find a real pair.
    rng = random.Random(1)
    seen: dict[int, str] = {}
    pair = None
    for _ in range(1_000_000):
        sid = f"{rng.getrandbits(128):032x}"  # random, uuid-like session ids
        h = fnv1a_32(sid)
        if h in seen:
            pair = (seen[h], sid)
            break
        seen[h] = sid
    assert pair is not None and pair[0] != pair[1] and fnv1a_32(pair[0]) == fnv1a_32(pair[1])
    pool = distinct_sid_pool("rls_article_x", 256)
    assert len({fnv1a_32(s) for s in pool} | {fnv1a_32("0")}) == len(pool) + 1
    # The trap is real, and fnv1a_32 is the hash durable-rules uses: facts asserted under the two
    # colliding sids join in one session (a bare durable ruleset with a two-fact rule).
    joined = run_child(f"""
        from durable import engine as de
        fired = []
        class Host(de.Host):
            def _run(self): return None
            def get_action(self, name):
                return lambda c: fired.append(name)
        host = Host()
        host.register_rulesets({{"join": {{"both": {{"all": [{{"f": {{"t": "ferritin"}}}}, {{"r": {{"t": "rls"}}}}], "run": "both"}}}}}})
        host.assert_facts("join", [{{"sid": "{pair[0]}", "t": "ferritin", "v": 30}}])
        host.assert_facts("join", [{{"sid": "{pair[1]}", "t": "rls"}}])
        out(fired=fired)
    """)
    assert joined["fired"] == ["both"], "two patients' facts joined: the collision is real"
    answer = run_child("""
        d = DurableEvaluator(RS)
        hashes = [fnv1a_32(s) for s in d.pool]
        out(pool=len(d.pool), distinct=len(set(hashes)), zero_hash_clash=fnv1a_32("0") in hashes)
    """)
    assert answer["distinct"] == answer["pool"] and not answer["zero_hash_clash"]


def test_concurrent_evaluations_of_different_patients_never_mix_facts():
    answer = run_child("""
        d, p = DurableEvaluator(RS), PythonEvaluator(RS)
        patients = [LOW, HIGH, NOTHING]
        expected = [p.fired(f) for f in patients]
        wrong = []
        def work(i):
            for n in range(300):
                k = (i + n) % 3
                if d.fired(patients[k]) != expected[k]:
                    wrong.append(k)
        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads: t.start()
        for t in threads: t.join()
        out(wrong=len(wrong), expected=expected, free=d.free, pool=len(d.pool))
    """)
    assert answer["wrong"] == 0
    assert answer["expected"][0] != answer["expected"][1]  # the patients really differ
    assert answer["free"] == answer["pool"]


def test_more_than_1024_evaluations_never_exhaust_sessions():
    answer = run_child("""
        import resource
        d, p = DurableEvaluator(RS), PythonEvaluator(RS)
        expected = p.fired(LOW)
        bad = sum(d.fired(LOW) != expected for _ in range(2000))
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        errors = []
        def work():
            try:
                for _ in range(250):
                    if d.fired(LOW) != expected:
                        errors.append("wrong")
            except Exception as exc:
                errors.append(type(exc).__name__)
        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads: t.start()
        for t in threads: t.join()
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out(bad=bad, errors=errors, evaluations=d.evaluations, free=d.free, pool=len(d.pool), retired=len(d.retired), rss_growth_kb=rss_after - rss_before)
    """)
    assert answer["bad"] == 0 and answer["errors"] == []
    assert answer["evaluations"] == 4000
    assert answer["free"] == answer["pool"] and answer["retired"] == 0
    assert answer["rss_growth_kb"] < 50_000  # sessions are deleted: memory does not grow with evaluations


def test_an_exception_inside_an_action_surfaces_as_engine_error_and_the_session_is_deleted():
    answer = run_child("""
        from cds_service.engine.durable_engine import _Collector
        d, p = DurableEvaluator(RS), PythonEvaluator(RS)
        target = p.fired(LOW)[0]
        outcomes = {}
        # 1. our own action wrapper fails while recording the firing
        original = _Collector.record
        def failing_record(self, name):
            if name == target:
                raise RuntimeError("injected")
            return original(self, name)
        _Collector.record = failing_record
        try:
            d.fired(LOW); outcomes["wrapper"] = "silent"
        except EngineError:
            outcomes["wrapper"] = "EngineError"
        _Collector.record = original
        # 2. an action raises past the wrapper: durable-rules swallows it into the session state
        collector = d._collector
        original_action = collector.action
        def raw_action(name):
            if name == target:
                def boom(c):
                    raise RuntimeError("injected")
                return boom
            return original_action(name)
        d2_rs = replace(RS, version=RS.version + "-inject")
        collector_action = _Collector.action
        _Collector.action = lambda self, name: raw_action(name) if name == target else collector_action(self, name)
        d2 = DurableEvaluator(d2_rs)
        _Collector.action = collector_action
        try:
            d2.fired(LOW); outcomes["library"] = "silent"
        except EngineError:
            outcomes["library"] = "EngineError"
        # the failed sessions were deleted: same sid, next patient, no leftover facts
        after = [d.fired(HIGH) == p.fired(HIGH), d2.fired(NOTHING) == p.fired(NOTHING)]
        out(outcomes=outcomes, after=after, free=[d.free, d2.free], pool=len(d.pool), retired=[len(d.retired), len(d2.retired)])
    """)
    assert answer["outcomes"] == {"wrapper": "EngineError", "library": "EngineError"}
    assert answer["after"] == [True, True]
    assert answer["free"] == [answer["pool"], answer["pool"]]
    assert answer["retired"] == [0, 0]


def test_repeated_firings_are_deduplicated():
    # durable-rules splits an `any` (compiled to $or) into one path per branch and fires the rule
    # once per path that matches: a real repeated firing, which the adapter reports once.
    answer = run_child("""
        repeated = checked = 0
        for profile, rs in RULESETS.items():
            d, p = DurableEvaluator(rs), PythonEvaluator(rs)
            for f in (LOW, HIGH, NOTHING):
                got = d.fired(f)
                raw = d._collector.fired
                repeated += len(raw) > len(set(raw))
                checked += 1
                assert got == p.fired(f), (profile, got)
                assert len(got) == len(set(got))
        out(repeated=repeated, checked=checked)
    """)
    assert answer["repeated"] >= 1  # the engine really fired some rule more than once


def test_every_operator_plain_and_negated_matches_the_reference_on_missing_equal_and_either_side():
    # The rule files use few operators today; the compiler must be right for all of them, and for
    # `is` / `equals` under `none`, whatever a future rule writes.
    answer = run_child("""
        from cds_service.engine.ruleset import Rule
        leaves = [{"fact": "ferritin", "field": "value_ug_per_l", "op": op, "param": "ferritin_low"} for op in ("<", "<=", ">", ">=", "==", "!=")]
        leaves += [{"fact": "ferritin", "field": "value_ug_per_l", "op": "<=", "param": "tsat_low"}]  # null in the article profile
        leaves += [{"fact": "ferritin", "field": "current", "is": True}, {"fact": "ferritin", "field": "current", "is": False}]
        leaves += [{"fact": "context", "field": "hook", "equals": "order-sign"}]
        rules = []
        for i, leaf in enumerate(leaves):
            for shape, when in (("plain", leaf), ("none", {"none": [leaf]}), ("all-none", {"all": [{"none": [leaf]}, {"fact": "conditions", "field": "rls", "is": True}]}),
                                ("any", {"any": [leaf, {"fact": "conditions", "field": "pregnancy", "is": True}]})):
                rules.append(Rule(id=f"r{i}-{shape}", title="t", outcome="start-oral-iron", when=when, citation={"source": "spec", "text": "t"}, file="x"))
        rs = replace(RS, rules=tuple(rules), version=RS.version + "-ops")
        d, p = DurableEvaluator(rs), PythonEvaluator(rs)
        mismatches, checked = [], 0
        for value in (None, 49.0, 50, 50.0, 51.5):
            for current in (None, True, False):
                for hook in ("patient-view", "order-sign", None):
                    for rls in (True, False):
                        f = facts(conditions=ConditionsFact(rls=rls))
                        f["ferritin"]["value_ug_per_l"] = value
                        f["ferritin"]["current"] = current
                        f["context"]["hook"] = hook
                        checked += 1
                        got, want = d.fired(f), p.fired(f)
                        if got != want:
                            mismatches.append([value, current, hook, rls, sorted(set(got) ^ set(want))])
        out(checked=checked, rules=len(rules), mismatches=mismatches[:5])
    """)
    assert answer["checked"] == 90 and answer["rules"] == 40
    assert answer["mismatches"] == []


def test_retired_sessions_never_exhaust_the_pool_nor_reuse_a_hash():
    # A session in which no action ran cannot be deleted (segfault) and may hold facts: its sid is
    # retired for good. Force that 300 times (more than the pool), then evaluate normally.
    answer = run_child("""
        d, p = DurableEvaluator(RS), PythonEvaluator(RS)
        original = d._host.assert_facts
        def broken(name, facts):
            raise RuntimeError("injected before any action ran")
        d._host.assert_facts = broken
        failures = 0
        for _ in range(300):
            try:
                d.fired(LOW)
            except EngineError:
                failures += 1
        d._host.assert_facts = original
        ok = all(d.fired(f) == p.fired(f) for f in (LOW, HIGH, NOTHING))
        hashes = [fnv1a_32(s) for s in d.pool]
        out(failures=failures, retired=len(d.retired), pool=len(d.pool), distinct=len(set(hashes)), zero=fnv1a_32("0") in hashes, ok=ok)
    """)
    assert answer["failures"] == 300 and answer["retired"] == 300
    assert answer["pool"] > 300 and answer["distinct"] == answer["pool"] and not answer["zero"]
    assert answer["ok"]
