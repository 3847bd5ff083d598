"""durable-rules 2.0.28, wrapped so that none of its known failure modes can reach a patient.

Every trap listed in shared/durable-rules.md, and what this module does about it:

- Background timer threads crash the process under load: `_QuietHost._run` never starts them.
- `delete_state` on a session where no action ran segfaults ("no rule fired"): every ruleset
  has a catch-all rule on the case fact (`__sentinel__`), so an action always runs first.
- `assert_facts([])` segfaults: one case fact is asserted per evaluation, never an empty batch.
- A fact with 254+ keys segfaults: facts are flat and checked against MAX_KEYS before assertion.
- Numbers in exponent notation are rejected (error 204): `normalize_facts` (shared with the
  python evaluator) rounds to 4 decimals and refuses magnitudes of 1e15 and over; parameters too.
- Sessions are told apart by a 32-bit hash of the sid, and colliding sids join two patients'
  facts: sids come from a fixed pool whose hashes are checked distinct at start-up, and a sid is
  never shared by two evaluations in flight.
- 1024 live sessions per ruleset is a hard cap: the pool is smaller, and every session is
  deleted in a `finally`.
- A fact without `sid` lands in the shared session "0": every fact carries its sid.
- `$not` depends on assertion order: no `$not` is ever compiled. Negation (`none`) is compiled
  by De Morgan into field tests on the one case fact, with `$nex` for missing values.
- A rule whose only condition is a missing-field test matches the state object and loops: every
  compiled pattern starts with the positive discriminator `t == "case"`.
- Mixed types are coerced (`"12" < 30`, `true == 1`): facts are type-checked against the fact
  schema in `normalize_facts` before either evaluator sees them.
- An exception raised inside an action is swallowed: actions only append to a list, catch
  everything they raise themselves, and the evaluation raises EngineError when one failed.
- Several firings per rule (one per fact combination): firings are de-duplicated per rule.
- `MessageNotHandledException` for a fact no rule accepts: the sentinel accepts every case fact.
- The C engine never releases the GIL and is not proven thread-safe: evaluations are serialised
  by a lock (the service calls it from the event loop thread only; the lock covers the CLI and tests).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import threading
from typing import Any, Mapping

from cds_service.engine import EngineError
from cds_service.engine.conditions import Facts
from cds_service.engine.ruleset import RuleSet

SENTINEL = "__sentinel__"
CASE_TYPE = "case"
MAX_KEYS = 200
POOL_SIZE = 256
_FIELD_SEP = "__"
_INVERSE = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}
_DURABLE_OP = {"<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte", "!=": "$neq"}
_TRUE: dict[str, Any] = {"t": CASE_TYPE}
_FALSE: dict[str, Any] = {"t": "__never__"}


def fnv1a_32(text: str) -> int:
    """The hash durable-rules uses to tell sessions apart (shared/durable-rules.md)."""
    value = 0x811C9DC5
    for byte in text.encode("utf-8"):
        value ^= byte
        value = (value * 0x01000193) & 0xFFFFFFFF
    return value


def distinct_sid_pool(prefix: str, size: int = POOL_SIZE) -> list[str]:
    """`size` session ids whose 32-bit hashes are pairwise distinct (and distinct from "0")."""
    pool: list[str] = []
    seen = {fnv1a_32("0")}
    for n in itertools.count():
        sid = f"{prefix}-{n}"
        h = fnv1a_32(sid)
        if h in seen:
            continue
        seen.add(h)
        pool.append(sid)
        if len(pool) == size:
            return pool
    raise AssertionError("unreachable")


def flat_key(fact: str, field: str) -> str:
    return f"{fact}{_FIELD_SEP}{field}"


def _leaf(leaf: Mapping[str, Any], params: Mapping[str, Any], negate: bool) -> dict[str, Any]:
    key = flat_key(leaf["fact"], leaf["field"])
    if "is" in leaf or "equals" in leaf:
        expected = leaf["is"] if "is" in leaf else leaf["equals"]
        if not negate:
            return {key: expected}
        return {"$or": [{"$nex": {key: 1}}, {"$neq": {key: expected}}]}
    threshold = params.get(leaf["param"])
    if threshold is None or isinstance(threshold, bool):
        return _TRUE if negate else _FALSE
    op = _INVERSE[leaf["op"]] if negate else leaf["op"]
    test = {key: threshold} if op == "==" else {_DURABLE_OP[op]: {key: threshold}}
    return {"$or": [{"$nex": {key: 1}}, test]} if negate else test


def compile_condition(condition: Mapping[str, Any], params: Mapping[str, Any], negate: bool = False) -> dict[str, Any]:
    """A rule condition as one durable-rules expression over the flat case fact (De Morgan for `none`)."""
    if "all" in condition or "any" in condition:
        children = condition.get("all") or condition.get("any")
        conjunction = ("all" in condition) != negate
        parts = [compile_condition(c, params, negate) for c in children]
        return {"$and" if conjunction else "$or": parts} if len(parts) > 1 else parts[0]
    if "none" in condition:
        # none(children) == all(not child); negated: any(child)
        parts = [compile_condition(c, params, not negate) for c in condition["none"]]
        return {"$or" if negate else "$and": parts} if len(parts) > 1 else parts[0]
    return _leaf(condition, params, negate)


def compile_ruleset(ruleset: RuleSet) -> dict[str, Any]:
    """The durable-rules definition of one profile: one rule per rule file entry, plus the sentinel."""
    rules: dict[str, Any] = {
        SENTINEL: {"all": [{"m": {"t": CASE_TYPE}}], "run": SENTINEL},
    }
    for index, rule in enumerate(ruleset.rules):
        expression = compile_condition(rule.when, ruleset.parameters)
        rules[f"r{index}"] = {"all": [{"m": {"$and": [{"t": CASE_TYPE}, expression]}}], "run": rule.id}
    _check_numbers(rules)
    return rules


def _check_numbers(document: Any) -> None:
    """Refuse any number durable-rules would reject (JSON exponent notation) or misread (NaN)."""
    if isinstance(document, bool) or document is None or isinstance(document, str):
        return
    if isinstance(document, float):
        if document != document or "e" in repr(document).lower():
            raise EngineError("a number in exponent notation or NaN reached the engine")
        return
    if isinstance(document, int):
        if abs(document) >= 10**15:
            raise EngineError("an integer too large for the engine reached it")
        return
    if isinstance(document, dict):
        for value in document.values():
            _check_numbers(value)
        return
    if isinstance(document, (list, tuple)):
        for value in document:
            _check_numbers(value)


class _QuietHost:
    """A durable Host with no background timers and actions resolved by name from the rule ids."""

    def __new__(cls, collector: "_Collector") -> Any:
        from durable import engine as durable_engine

        class QuietHost(durable_engine.Host):
            def _run(self) -> None:  # noqa: D401 - the timers are what crash the process
                return None

            def get_action(self, action_name: str):  # one-argument, synchronous action
                return collector.action(action_name)

        return QuietHost()


class _Collector:
    """Receives firings during one `assert_facts` call (actions run synchronously in the caller)."""

    def __init__(self) -> None:
        self.fired: list[str] = []
        self.errors: list[str] = []
        self.sentinel = False

    def reset(self) -> None:
        self.fired = []
        self.errors = []
        self.sentinel = False

    def action(self, name: str):
        def run(c: Any) -> None:
            try:
                if name == SENTINEL:
                    self.sentinel = True
                else:
                    self.fired.append(name)
            except BaseException as exc:  # pragma: no cover - appending cannot fail in practice
                self.errors.append(f"{name}: {type(exc).__name__}")

        return run


class DurableEvaluator:
    """One profile compiled into a durable-rules ruleset; `fired` asserts one case fact per session."""

    name = "durable"

    def __init__(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset
        self._collector = _Collector()
        self._host = _QuietHost(self._collector)
        digest = hashlib.sha256(json.dumps([ruleset.profile, ruleset.version]).encode()).hexdigest()[:10]
        self._name = f"rls_{ruleset.profile.replace('-', '_')}_{digest}_{id(self):x}"
        self._host.register_rulesets({self._name: copy.deepcopy(compile_ruleset(ruleset))})
        self._pool = distinct_sid_pool(self._name)
        self._free = list(reversed(self._pool))
        self._lock = threading.Lock()
        self.retired: list[str] = []

    def _case_fact(self, facts: Facts, sid: str) -> dict[str, Any]:
        case: dict[str, Any] = {"sid": sid, "t": CASE_TYPE}
        for fact_type, record in facts.items():
            for field, value in record.items():
                if value is not None:
                    case[flat_key(fact_type, field)] = value
        if len(case) > MAX_KEYS:
            raise EngineError(f"case fact has {len(case)} keys; durable-rules crashes from 254")
        _check_numbers(case)
        return case

    def fired(self, facts: Facts) -> list[str]:
        with self._lock:
            if not self._free:
                raise EngineError("no free engine session")
            sid = self._free.pop()
            self._collector.reset()
            try:
                case = self._case_fact(facts, sid)
                self._host.assert_facts(self._name, [case])
                if self._collector.errors:
                    raise EngineError("rule action failed: " + "; ".join(self._collector.errors))
                if not self._collector.sentinel:
                    raise EngineError("durable-rules did not run the sentinel rule: answer not trusted")
                raw = set(self._collector.fired)
            except EngineError:
                raise
            except Exception as exc:
                raise EngineError(f"durable-rules failed: {type(exc).__name__}: {exc}") from exc
            finally:
                self._release(sid)
            return [rule.id for rule in self.ruleset.rules if rule.id in raw]

    def _release(self, sid: str) -> None:
        """Delete the session and return its sid; a session that may hold facts is never reused."""
        if not self._collector.sentinel:
            # No action ran: delete_state would segfault, and the session may hold this
            # request's facts. Retire the sid for the life of the process instead.
            self.retired.append(sid)
            return
        try:
            self._host.delete_state(self._name, sid)
        except Exception:
            self.retired.append(sid)
            raise
        self._free.append(sid)

    def close(self) -> None:
        """Sessions are deleted per evaluation; the ruleset lives as long as the process."""
