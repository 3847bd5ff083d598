"""durable-rules 2.0.28, wrapped so that none of its known failure modes can reach a patient.

Every trap of durable-rules 2.0.28 (listed with its test in docs/engine.md), and what this module does about it:

- Background timer threads crash the process under load: `_QuietHost._run` never starts them.
- `delete_state` on a session where no action ran segfaults ("no rule fired"): every ruleset
  has a catch-all rule on the case fact (`__sentinel__`), so an action always runs first.
- `assert_facts([])` segfaults: one case fact is asserted per evaluation, never an empty batch.
- A fact with 254+ keys segfaults: only the fields the rules read go into the one flat case
  fact, their count is checked against MAX_KEYS at start-up and again before every assertion.
- Numbers in exponent notation are rejected (error 204): `normalize_facts` (shared with the
  python evaluator) rounds to 4 decimals and refuses magnitudes of 1e15 and over; parameters too.
- Sessions are told apart by a 32-bit hash of the sid, and colliding sids join two patients'
  facts: sids come from a fixed pool whose hashes are checked distinct at start-up, and a sid is
  never shared by two evaluations in flight.
- 1024 live sessions per ruleset is a hard cap: the pool is smaller, and every session is
  deleted in a `finally`. A fact that is refused before assertion never takes a sid. A retired
  sid is replaced by a fresh one (hash distinct from every sid used) up to MAX_LIVE_SESSIONS.
- A fact without `sid` lands in the shared session "0": every fact carries its sid.
- `$not` depends on assertion order: no `$not` is ever compiled. Negation (`none`) is compiled
  by De Morgan into field tests on the one case fact, with `$nex` for missing values.
- A rule whose only condition is a missing-field test matches the state object and loops: every
  compiled pattern starts with the positive discriminator `t == "case"`.
- Mixed types are coerced (`"12" < 30`, `true == 1`): facts are type-checked against the fact
  schema in `normalize_facts` before either evaluator sees them.
- An exception raised inside an action is swallowed: actions only append to a list and catch
  what they raise themselves; and the state durable-rules returns is checked for the
  `exception` it stores, so an action failing anywhere surfaces as EngineError, not as silence.
- Several firings per rule (one per fact combination): firings are de-duplicated per rule.
- `MessageNotHandledException` for a fact no rule accepts: the sentinel accepts every case fact.
- The C engine never releases the GIL and is not proven thread-safe: evaluations are serialised
  by one process-wide lock (threads gain nothing; scale with worker processes).
- Text compared with `equals` is passed as is (json.dumps with ensure_ascii=False); text longer
  than MAX_TEXT is refused. Text the rules never read (dates, displays) never reaches the engine.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import logging
import threading
from typing import Any, Mapping

from cds_service.engine import EngineError
from cds_service.engine.conditions import Facts
from cds_service.engine.explain import NodeValues
from cds_service.engine.ruleset import RuleSet, iter_leaves

log = logging.getLogger(__name__)

SENTINEL = "__sentinel__"
CASE_TYPE = "case"
MAX_KEYS = 200
MAX_TEXT = 200
POOL_SIZE = 256
MAX_LIVE_SESSIONS = 1000  # durable-rules raises MemoryError at 1024 live sessions per ruleset
_FIELD_SEP = "__"
_INVERSE = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}
_DURABLE_OP = {"<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte", "!=": "$neq"}
_TRUE: dict[str, Any] = {"t": CASE_TYPE}
_FALSE: dict[str, Any] = {"t": "__never__"}


def fnv1a_32(text: str) -> int:
    """The hash durable-rules uses to tell sessions apart (docs/engine.md)."""
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


def referenced_fields(ruleset: RuleSet) -> tuple[tuple[str, str], ...]:
    """(fact, field) pairs the rules read, sorted: the only values the case fact carries."""
    return tuple(sorted({(leaf["fact"], leaf["field"]) for rule in ruleset.rules for leaf in iter_leaves(rule.when)}))


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
        from durable import engine as durable_engine  # here: importing durable starts its runtime, only when this engine is chosen

        class QuietHost(durable_engine.Host):
            def _run(self) -> None:  # noqa: D401 - the timers are what crash the process
                return None

            def get_action(self, action_name: str):  # one-argument, synchronous action
                return collector.action(action_name)

        return QuietHost()


class _Collector:
    """Receives firings during one `assert_facts` call (actions run synchronously in the caller)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.fired: list[str] = []
        self.errors: list[str] = []
        self.sentinel = False
        self.ran = False

    def record(self, name: str) -> None:
        if name == SENTINEL:
            self.sentinel = True
        else:
            self.fired.append(name)

    def action(self, name: str):
        def run(c: Any) -> None:
            self.ran = True
            try:
                self.record(name)
            except BaseException as exc:
                self.errors.append(f"{name}: {type(exc).__name__}")

        return run


# durable-rules keeps its rulesets in C globals and was never shown thread-safe: one lock for all.
_ENGINE_LOCK = threading.Lock()


class DurableEvaluator:
    """One profile compiled into a durable-rules ruleset; `fired` asserts one case fact per session."""

    name = "durable"

    def __init__(self, ruleset: RuleSet, pool_size: int = POOL_SIZE) -> None:
        self.ruleset = ruleset
        self._fields = referenced_fields(ruleset)
        if len(self._fields) + 2 > MAX_KEYS:
            raise EngineError(f"profile {ruleset.profile}: rules read {len(self._fields)} fields; the case fact allows {MAX_KEYS - 2}")
        self._collector = _Collector()
        self._host = _QuietHost(self._collector)
        digest = hashlib.sha256(json.dumps([ruleset.profile, ruleset.version]).encode()).hexdigest()[:10]
        self._name = f"rls_{ruleset.profile.replace('-', '_')}_{digest}_{id(self):x}"
        self._host.register_rulesets({self._name: copy.deepcopy(compile_ruleset(ruleset))})
        self.pool = distinct_sid_pool(self._name, pool_size)
        self._free = list(reversed(self.pool))
        self.retired: list[str] = []
        self._hashes = {fnv1a_32("0")} | {fnv1a_32(sid) for sid in self.pool}
        self._minted = itertools.count()
        self.evaluations = 0

    @property
    def free(self) -> int:
        """Sids ready for the next evaluation; equals the pool size whenever none is in flight."""
        return len(self._free)

    def case_fact(self, facts: Facts, sid: str) -> dict[str, Any]:
        """The one flat fact asserted per evaluation: the fields the rules read, None left out."""
        case: dict[str, Any] = {"sid": sid, "t": CASE_TYPE}
        for fact_type, field in self._fields:
            value = facts.get(fact_type, {}).get(field)
            if value is None:
                continue
            if isinstance(value, str) and len(value) > MAX_TEXT:
                raise EngineError(f"{fact_type}.{field}: text longer than {MAX_TEXT} characters")
            case[flat_key(fact_type, field)] = value
        if len(case) > MAX_KEYS:
            raise EngineError(f"case fact has {len(case)} keys; durable-rules crashes from 254")
        _check_numbers(case)
        return case

    def fired(self, facts: Facts, values: NodeValues | None = None) -> list[str]:
        """The rules durable-rules fires for these facts; `values` are not read (it decides on its own)."""
        with _ENGINE_LOCK:
            case = self.case_fact(facts, "")  # refused here, before a session exists
            if not self._free:
                self._replenish()
            sid = self._free.pop()
            case["sid"] = sid
            self._collector.reset()
            asserted = False
            try:
                asserted = True
                state = self._host.assert_facts(self._name, [case])
                if isinstance(state, dict) and state.get("exception"):
                    raise EngineError("a rule action raised inside durable-rules")
                if self._collector.errors:
                    raise EngineError("rule action failed: " + "; ".join(self._collector.errors))
                if not self._collector.sentinel:
                    raise EngineError("durable-rules did not run the sentinel rule: answer not trusted")
                raw = set(self._collector.fired)  # de-duplicated: one entry per rule however often it fired
            except EngineError:
                raise
            except Exception as exc:
                raise EngineError(f"durable-rules failed: {type(exc).__name__}") from exc
            finally:
                self.evaluations += 1
                self._release(sid, asserted)
            return [rule.id for rule in self.ruleset.rules if rule.id in raw]

    def _replenish(self) -> None:
        """One more sid when retired sessions have used up the pool: its hash distinct from every
        sid ever used (retired sessions still hold facts), within durable-rules' live-session cap."""
        if len(self.pool) >= MAX_LIVE_SESSIONS:
            log.error("durable sessions exhausted: too many retired sessions", extra={"ruleset": self._name})
            raise EngineError("no free engine session (restart the worker)")
        while True:
            sid = f"{self._name}-x{next(self._minted)}"
            h = fnv1a_32(sid)
            if h not in self._hashes:
                self._hashes.add(h)
                self.pool.append(sid)
                self._free.append(sid)
                return

    def _release(self, sid: str, asserted: bool) -> None:
        """Delete the session and return its sid; a session that may hold facts is never reused."""
        if not asserted:
            self._free.append(sid)
            return
        if not self._collector.ran:
            # No action ran: delete_state would segfault, and the session may hold this
            # request's facts. Retire the sid for the life of the process instead.
            log.error("durable session retired without cleanup", extra={"ruleset": self._name})
            self.retired.append(sid)
            return
        try:
            self._host.delete_state(self._name, sid)
        except Exception:
            log.exception("durable session could not be deleted; sid retired", extra={"ruleset": self._name})
            self.retired.append(sid)
            return
        self._free.append(sid)

    def close(self) -> None:
        """Sessions are deleted per evaluation; the ruleset lives as long as the process."""
