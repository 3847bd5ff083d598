"""The rule engine boundary: facts in, fired rules out, whichever evaluator runs them.

`RuleEngine.evaluate` is the only entry point the pipeline uses. The evaluator (durable-rules
or the pure-Python reference) only answers "which rules hold"; everything else that both must
agree on is done here once, from the rule files' data: silencing rules that read unknown data,
precedence (`overrides`), matched facts and the deterministic order of the answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping, Protocol

from cds_service.engine.conditions import Facts, holds_when_unknown
from cds_service.engine.explain import NodeValues
from cds_service.engine.ruleset import Rule, RuleSet
from fhir_mappings.facts import fact_schema

log = logging.getLogger(__name__)


class Evaluator(Protocol):
    name: str

    def fired(self, facts: Facts, values: NodeValues | None = None) -> list[str]:
        """Ids of the rules whose condition holds (before precedence). `values` are the profile's
        node values for these facts (`Explainer.node_values`), which the why-not reads anyway:
        an evaluator may fire from them (the reference evaluator does) or decide on its own."""

    def close(self) -> None:
        """Release engine resources."""


class EngineError(RuntimeError):
    """The evaluator failed (an action raised, a session could not be created...): no card, a 503."""


@dataclass(frozen=True)
class FiredRule:
    rule: Rule
    matched_facts: tuple[str, ...]
    """Fact types the rule read (sorted); the trace maps them to source resources."""


@dataclass(frozen=True)
class SilentRule:
    rule: Rule
    why: str
    """The first unmet condition, a suppressing outcome, or the unknown data it needed."""


@dataclass(frozen=True)
class EngineResult:
    engine: str
    fired: tuple[FiredRule, ...]
    silent: tuple[SilentRule, ...]
    withheld: tuple[str, ...] = ()
    """Outcomes that did not fire because the answer depended on unknown data (sorted)."""

    def fired_ids(self) -> list[str]:
        return [f.rule.id for f in self.fired]

    def outcomes(self) -> list[str]:
        seen: list[str] = []
        for f in self.fired:
            if f.rule.outcome not in seen:
                seen.append(f.rule.outcome)
        return seen


MAX_MAGNITUDE = 1e15


def _accepted_types(type_text: str) -> tuple[type, ...]:
    """Python types a fact field may hold, from its annotation in fhir_mappings.facts ("float | None")."""
    names = {part.strip() for part in type_text.split("|")}
    accepted: list[type] = [type(None)]
    if "bool" in names:
        accepted.append(bool)
    if "int" in names or "float" in names:
        accepted += [int, float]
    if "str" in names:
        accepted.append(str)
    return tuple(accepted)


@lru_cache(maxsize=1)
def _field_types() -> dict[str, dict[str, tuple[type, ...]]]:
    return {fact: {name: _accepted_types(spec["type"]) for name, spec in fields_.items()} for fact, fields_ in fact_schema().items()}


def normalize_facts(facts: Facts) -> dict[str, dict[str, object]]:
    """The exact values both evaluators see: names and types checked, floats rounded to 4 decimals.

    Why: durable-rules coerces silently (`"12" < 30`, `true == 1`) where the reference evaluator
    does not, so a value of the wrong type would make the two disagree; such a fact set is refused
    (EngineError, no card) rather than guessed. Rounding keeps every number out of JSON exponent
    notation (durable-rules rejects it with error 204), and doing it here, before either evaluator,
    keeps their answers identical. Never puts a value in the message (no PHI in logs).
    """
    types = _field_types()
    out: dict[str, dict[str, object]] = {}
    for fact_type, record in facts.items():
        fields_ = types.get(fact_type)
        if fields_ is None:
            raise EngineError(f"unknown fact type {fact_type!r}")
        clean: dict[str, object] = {}
        for name, value in record.items():
            accepted = fields_.get(name)
            if accepted is None:
                raise EngineError(f"unknown fact field {fact_type}.{name}")
            kind = type(value)
            if kind not in accepted:  # the exact types first (bool is an int subclass; a bool field is not a number)
                _check_subclass(fact_type, name, value, accepted)
            if kind is float:
                if value != value or abs(value) >= MAX_MAGNITUDE:
                    raise EngineError(f"{fact_type}.{name}: number out of range")
                value = round(value, 4) + 0.0
            elif kind is int and abs(value) >= MAX_MAGNITUDE:
                raise EngineError(f"{fact_type}.{name}: number out of range")
            clean[name] = value
        out[fact_type] = clean
    return out


def _check_subclass(fact_type: str, name: str, value: object, accepted: tuple[type, ...]) -> None:
    """A value whose exact type the field does not name: refused unless it is a subclass of one it
    accepts (a str subclass), never a bool where the field is not boolean."""
    if not isinstance(value, accepted) or (isinstance(value, bool) and bool not in accepted) or isinstance(value, (int, float)):
        raise EngineError(f"{fact_type}.{name}: a {type(value).__name__} where the fact schema wants {accepted}")


def available_engines() -> list[str]:
    names = ["python"]
    try:
        import durable.engine  # noqa: F401
    except Exception:  # pragma: no cover - depends on the interpreter (3.13+)
        return names
    return ["durable", *names]


def make_evaluator(name: str, ruleset: RuleSet) -> Evaluator:
    # imported on demand: durable-rules is absent on some interpreters, and each adapter loads only when chosen
    if name == "durable":
        from cds_service.engine.durable_engine import DurableEvaluator

        return DurableEvaluator(ruleset)
    if name == "python":
        from cds_service.engine.python_engine import PythonEvaluator

        return PythonEvaluator(ruleset)
    raise ValueError(f"unknown rule engine {name!r} (durable or python)")


DATA_UNKNOWN = "data unknown: "
OVERRIDDEN = "overridden by rule "
MAYBE_OVERRIDDEN = "may be overridden by rule "
SILENCING_REASONS = (DATA_UNKNOWN, OVERRIDDEN, MAYBE_OVERRIDDEN)
"""How the why of a rule silenced by unknown data or by precedence starts; any other why is the
rule's first unmet condition (the test page and the CLI word the two differently)."""


def _undecided(ruleset: RuleSet, facts: Facts, unknown: tuple[str, ...]) -> dict[str, str]:
    """Rule id -> why, for every rule whose answer depends on unknown data.

    `unknown` names whole fact types (`ferritin`) or fields (`conditions.pregnancy`). A rule that
    reads none of them is decided by the evaluators alone. One that does is judged three-valued:
    it still fires when it holds whatever the unknown data is (say, a safety card with another
    branch of an `any` known to hold), and is undecided, so silent, when the answer depends on it.
    """
    if not unknown:
        return {}
    names = set(unknown)

    def is_unknown(fact: str, field: str) -> bool:
        return fact in names or f"{fact}.{field}" in names

    undecided: dict[str, str] = {}
    for rule in ruleset.rules:
        missing = sorted({fact if fact in names else f"{fact}.{field}" for fact, field in rule.fields() if is_unknown(fact, field)})
        if missing and holds_when_unknown(rule.when, facts, ruleset.parameters, is_unknown) is None:
            undecided[rule.id] = DATA_UNKNOWN + ", ".join(missing)
    return undecided


def resolve(ruleset: RuleSet, facts: Facts, raw_fired: list[str], unknown: tuple[str, ...], engine: str, values: NodeValues | None = None) -> EngineResult:
    """Turn the evaluator's raw answer into the contract: silencing, precedence, order, reasons.

    Precedence is cautious about unknown data too: an undecided rule might have fired, so the
    outcomes it overrides are silenced as well ("may be overridden by ..."). Nothing therefore
    fires with unknown data that would not also fire for the chart without the unreadable data.
    """
    raw = set(raw_fired)
    silenced = _undecided(ruleset, facts, unknown)
    maybe_suppressed: dict[str, str] = {}
    for rule in ruleset.rules:
        if rule.id in silenced:
            for code in rule.overrides:
                maybe_suppressed.setdefault(code, rule.id)
    effective = [r for r in ruleset.rules if r.id in raw and r.id not in silenced]
    suppressed_outcomes: dict[str, str] = {}
    for rule in effective:
        for code in rule.overrides:
            suppressed_outcomes.setdefault(code, rule.id)
    fired: list[FiredRule] = []
    withheld: set[str] = {r.outcome for r in ruleset.rules if r.id in silenced}
    for rule in effective:
        by = suppressed_outcomes.get(rule.outcome)
        if by and by != rule.id:
            silenced[rule.id] = f"{OVERRIDDEN}{by}"
            continue
        maybe = maybe_suppressed.get(rule.outcome)
        if maybe:
            silenced[rule.id] = f"{MAYBE_OVERRIDDEN}{maybe}, whose data is unknown"
            withheld.add(rule.outcome)
            continue
        fired.append(FiredRule(rule=rule, matched_facts=rule.fact_types()))
    silent: list[SilentRule] = []
    rules = ruleset.rules
    unmet = ruleset.explainer.why(facts, lambda index: rules[index].id not in raw and rules[index].id not in silenced, values)
    for rule, why in zip(ruleset.rules, unmet):
        if rule.id in silenced:
            silent.append(SilentRule(rule=rule, why=silenced[rule.id]))
        elif rule.id not in raw:
            silent.append(SilentRule(rule=rule, why=why or "condition not met"))
    outcomes_fired = {f.rule.outcome for f in fired}
    return EngineResult(engine=engine, fired=tuple(fired), silent=tuple(silent), withheld=tuple(sorted(withheld - outcomes_fired)))


class RuleEngine:
    """One profile's rules bound to one evaluator, built once per process."""

    def __init__(self, ruleset: RuleSet, engine: str) -> None:
        self.ruleset = ruleset
        self.evaluator = make_evaluator(engine, ruleset)
        self.name = self.evaluator.name

    def evaluate(self, facts: Facts, unknown: tuple[str, ...] = ()) -> EngineResult:
        facts = normalize_facts(facts)
        try:
            values = self.ruleset.explainer.node_values(facts)
            raw = self.evaluator.fired(facts, values)
        except EngineError:
            raise
        except Exception as exc:
            raise EngineError(f"{self.name} evaluator failed: {type(exc).__name__}") from exc
        return resolve(self.ruleset, facts, raw, unknown, self.name, values)

    def close(self) -> None:
        self.evaluator.close()


def choose_engine(requested: str | None) -> tuple[str, str | None]:
    """The engine to run and, when durable-rules was asked for but cannot be imported, why not: the
    caller logs it and /healthz shows it.

    The reference evaluator is the default: on a new chart durable-rules costs about twice as
    much per request for the same answers (docs/performance.md); it stays supported, and the
    differential tests run both on every rule case and on generated charts.
    """
    if requested not in (None, "durable", "python"):
        raise ValueError(f"CDS_RULE_ENGINE must be durable or python, not {requested!r}")
    wanted = requested or "python"
    if wanted == "durable" and "durable" not in available_engines():
        return "python", "durable-rules cannot be imported on this interpreter; using the python evaluator"
    return wanted, None


def build_engines(rulesets: Mapping[str, RuleSet], engine: str) -> dict[str, RuleEngine]:
    return {name: RuleEngine(rs, engine) for name, rs in rulesets.items()}
