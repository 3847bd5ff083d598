"""`cds-service rules lint`: every check an auditor would want before a rule file is trusted.

The loader (`ruleset.py`) stops at the first problem so the service never starts on a bad
file; the linter reads every file and reports every problem it can find, each naming its file:
schema violations (unknown keys), missing citations, citation sources not in sources.yaml,
unknown outcome codes, facts, fields and parameters, parameters a profile lacks, duplicate ids,
unreachable rules (contradictory conditions, or an outcome always overridden), and rules that no
test case makes fire (a warning here; a failure in `rules test`).
"""

from __future__ import annotations

import itertools
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import jsonschema
import yaml

from cds_service.engine.conditions import OPERATORS
from cds_service.engine.ruleset import (
    CONDITIONS_FILE,
    RULES_DIR,
    RuleFileError,
    _schema,
    condition_hint,
    expand_shared,
    load_all_rulesets,
    load_outcomes,
    load_shared_conditions,
    profile_paths,
)
from cds_service.runtime import build_runtime
from cds_service.settings import Settings
from cds_service.tooling.offline import evaluate_document
from cds_service.tooling.ruletests import load_cases
from fhir_mappings.datafiles import read_yaml
from fhir_mappings.facts import fact_schema


@dataclass(frozen=True)
class Finding:
    level: str
    """"error" (exit 1), "warning" or "note"."""
    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.file}: {self.message}"


@dataclass
class LintReport:
    findings: list[Finding] = field(default_factory=list)

    def add(self, level: str, file: str, message: str) -> None:
        self.findings.append(Finding(level, file, message))

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]


# --- conditions as literals ------------------------------------------------------------------------

@dataclass(frozen=True)
class Literal:
    """One leaf that must hold (positive) or must not hold (negative) for the rule to hold."""

    fact: str
    field: str
    kind: str  # "is", "equals" or an operator
    value: Any  # the boolean, the text, or the parameter name
    positive: bool


def _leaf_literal(leaf: Mapping[str, Any], positive: bool) -> Literal:
    if "is" in leaf:
        return Literal(leaf["fact"], leaf["field"], "is", leaf["is"], positive)
    if "equals" in leaf:
        return Literal(leaf["fact"], leaf["field"], "equals", leaf["equals"], positive)
    return Literal(leaf["fact"], leaf["field"], leaf["op"], leaf["param"], positive)


def required_literals(condition: Mapping[str, Any], positive: bool = True) -> tuple[list[Literal], bool]:
    """The leaves that must all hold for `condition` to hold, and whether they say everything.

    Walks only through conjunctions: `all`, `none` (each child must fail), a negated `any`, and
    one-child groups. A disjunction stops the walk (the second value is then False).
    """
    literals: list[Literal] = []
    complete = True
    for key in ("all", "any", "none"):
        if key in condition:
            children = condition[key]
            child_positive = positive if key != "none" else not positive
            conjunctive = (key == "all" and positive) or (key == "any" and not positive) or (key == "none" and positive)
            if conjunctive or len(children) == 1:
                for child in children:
                    found, whole = required_literals(child, child_positive)
                    literals += found
                    complete = complete and whole
                return literals, complete
            return [], False
    return [_leaf_literal(condition, positive)], True


def _satisfiable_numbers(constraints: list[tuple[str, float]]) -> bool:
    """Is there a number x with `x op t` for every (op, t)? Endpoints and midpoints suffice."""
    points = sorted({t for _, t in constraints})
    candidates = set(points) | {points[0] - 1, points[-1] + 1}
    candidates |= {(a + b) / 2 for a, b in zip(points, points[1:])}
    return any(all(OPERATORS[op](x, t) for op, t in constraints) for x in candidates)


def contradiction(literals: Iterable[Literal], params: Mapping[str, Any]) -> str | None:
    """Why these literals can never all hold under `params`, or None when they can."""
    by_field: dict[tuple[str, str], list[Literal]] = {}
    for literal in literals:
        by_field.setdefault((literal.fact, literal.field), []).append(literal)
    for (fact, name), group in by_field.items():
        where = f"{fact}.{name}"
        for a, b in itertools.combinations(group, 2):
            if a.kind in ("is", "equals") and a.kind == b.kind:
                if a.positive and b.positive and a.value != b.value:
                    return f"{where} must be both {a.value!r} and {b.value!r}"
                if a.value == b.value and a.positive != b.positive:
                    return f"{where} must be and must not be {a.value!r}"
        numeric = [lit for lit in group if lit.kind in OPERATORS]
        positives = [lit for lit in numeric if lit.positive]
        if not positives:
            continue  # negated comparisons alone hold when the value is missing
        for lit in positives:
            if params.get(lit.value) is None:
                return f"{where} {lit.kind} {lit.value}: parameter {lit.value} is null in this profile"
        inverse = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}
        constraints = []
        for lit in numeric:
            threshold = params.get(lit.value)
            if threshold is None:
                continue  # a negated comparison with a disabled parameter always holds
            constraints.append((lit.kind if lit.positive else inverse[lit.kind], float(threshold)))
        if not _satisfiable_numbers(constraints):
            shown = " and ".join(f"{'' if lit.positive else 'not '}{where} {lit.kind} {lit.value}" for lit in numeric)
            return f"no value satisfies {shown}"
    return None


# --- the linter --------------------------------------------------------------------------------------

def _read(path: Path, report: LintReport) -> Any:
    try:
        return read_yaml(path)
    except (OSError, yaml.YAMLError) as exc:
        report.add("error", path.name, f"cannot be read as YAML: {exc}")
        return None


def _schema_errors(document: Any, schema_name: str, path: Path, report: LintReport) -> bool:
    validator = jsonschema.Draft202012Validator(_schema(schema_name))
    errors = sorted(validator.iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path])
    for error in errors:
        best = jsonschema.exceptions.best_match([error])
        hint = condition_hint(error)
        where = "/".join(str(p) for p in (hint[0] if hint else best.absolute_path)) or "(top)"
        report.add("error", path.name, f"{where}: {hint[1] if hint else best.message}")
    return bool(errors)


def _leaves(condition: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for key in ("all", "any", "none"):
        if key in condition and isinstance(condition[key], list):
            for child in condition[key]:
                if isinstance(child, Mapping):
                    yield from _leaves(child)
            return
    yield condition


def lint(rules_dir: Path = RULES_DIR, with_cases: bool = True) -> LintReport:
    """Lint every rule file, profile, outcome and source file of `rules_dir`."""
    report = LintReport()
    schema = fact_schema()
    outcomes = load_outcomes(rules_dir)
    sources_doc = _read(rules_dir / "sources.yaml", report) or {}
    sources = set((sources_doc.get("sources") or {}).keys())

    profiles: dict[str, dict[str, Any]] = {}
    for path in profile_paths(rules_dir):
        document = _read(path, report)
        if document is None or _schema_errors(document, "profile.schema.json", path, report):
            continue
        profiles[path.name] = document
        for name in document["rule_files"]:
            if not (rules_dir / name).is_file():
                report.add("error", path.name, f"rule file {name} does not exist")
    listed_by: dict[str, list[dict[str, Any]]] = {}
    for document in profiles.values():
        for name in document["rule_files"]:
            listed_by.setdefault(name, []).append(document)

    all_params = {p for d in profiles.values() for p in d["parameters"]}
    try:
        shared = load_shared_conditions(rules_dir)
    except RuleFileError as exc:
        report.add("error", CONDITIONS_FILE, str(exc))
        shared = {}
    for condition in shared.values():
        if condition.citation["source"] not in sources:
            report.add("error", CONDITIONS_FILE, f"shared condition {condition.name}: citation source {condition.citation['source']!r} is not in sources.yaml")
    seen_ids: dict[str, str] = {}
    rules: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(rules_dir.glob("*.rules.yaml")):
        document = _read(path, report)
        if document is None:
            continue
        if path.name not in listed_by:
            report.add("warning", path.name, "no profile lists this rule file: its rules never run")
        for item in document.get("rules") or [] if isinstance(document, dict) else []:
            if isinstance(item, dict) and "id" in item and "citation" not in item:
                report.add("error", path.name, f"rule {item['id']}: missing citation")
        if _schema_errors(document, "schema.json", path, report):
            continue
        for raw in document["rules"]:
            try:
                item = {**raw, "when": expand_shared(raw["when"], shared, f"{path.name}: rule {raw['id']}")}
            except RuleFileError as exc:
                report.add("error", path.name, str(exc))
                continue
            rule_id = item["id"]
            if rule_id in seen_ids:
                report.add("error", path.name, f"rule id {rule_id} is already defined in {seen_ids[rule_id]}")
            seen_ids[rule_id] = path.name
            rules.append((path.name, item))
            _check_names(path.name, item, schema, outcomes, sources, all_params, listed_by.get(path.name, []), report)

    _check_reachability(rules, profiles, listed_by, report)
    disabled_unknown = {
        (name, rid) for name, d in profiles.items() for rid in d.get("disable_rules", []) if rid not in seen_ids
    }
    for name, rid in sorted(disabled_unknown):
        report.add("error", name, f"disables unknown rule {rid}")
    if with_cases and not report.errors:
        for rule_id, file in sorted(untested_rules(rules_dir).items()):
            report.add("warning", file, f"rule {rule_id}: no test case makes it fire")
    return report


def _check_names(file: str, item: Mapping[str, Any], schema: Mapping[str, Any], outcomes: Mapping[str, Any], sources: set[str],
                 all_params: set[str], profiles: list[Mapping[str, Any]], report: LintReport) -> None:
    rule_id = item["id"]
    if item["citation"]["source"] not in sources:
        report.add("error", file, f"rule {rule_id}: citation source {item['citation']['source']!r} is not in sources.yaml")
    if item["outcome"] not in outcomes:
        report.add("error", file, f"rule {rule_id}: unknown outcome code {item['outcome']!r}")
    for code in item.get("overrides", []):
        if code not in outcomes:
            report.add("error", file, f"rule {rule_id}: overrides unknown outcome code {code!r}")
    for leaf in _leaves(item["when"]):
        fact, name = leaf["fact"], leaf["field"]
        if fact not in schema:
            report.add("error", file, f"rule {rule_id}: unknown fact {fact!r}")
            continue
        if name not in schema[fact]:
            report.add("error", file, f"rule {rule_id}: unknown field {fact}.{name}")
            continue
        kind = schema[fact][name]["type"]
        if "is" in leaf and "bool" not in kind:
            report.add("error", file, f"rule {rule_id}: {fact}.{name} is not a boolean field")
        if "equals" in leaf and "str" not in kind:
            report.add("error", file, f"rule {rule_id}: {fact}.{name} is not a text field")
        if "op" in leaf:
            if "int" not in kind and "float" not in kind:
                report.add("error", file, f"rule {rule_id}: {fact}.{name} is not a numeric field")
            param = leaf["param"]
            if param not in all_params:
                report.add("error", file, f"rule {rule_id}: unknown parameter {param!r}")
                continue
            for profile in profiles:
                if param not in profile["parameters"]:
                    report.add("error", file, f"rule {rule_id}: parameter {param!r} is missing from profile {profile['profile']}")


def _check_reachability(rules: list[tuple[str, dict[str, Any]]], profiles: Mapping[str, Mapping[str, Any]],
                        listed_by: Mapping[str, list[Mapping[str, Any]]], report: LintReport) -> None:
    literals = {item["id"]: required_literals(item["when"]) for _, item in rules}
    for file, item in rules:
        rule_id = item["id"]
        running = [p for p in listed_by.get(file, []) if rule_id not in p.get("disable_rules", [])]
        if not running:
            continue
        found, _ = literals[rule_id]
        reasons = {p["profile"]: contradiction(found, {k: v["value"] for k, v in p["parameters"].items()}) for p in running}
        if all(reasons.values()):
            report.add("error", file, f"rule {rule_id} is unreachable: " + "; ".join(f"{k}: {v}" for k, v in sorted(reasons.items())))
        else:
            for profile, why in sorted(reasons.items()):
                if why:
                    report.add("note", file, f"rule {rule_id} never fires in profile {profile}: {why}")
        # always overridden: a rule overriding this outcome holds whenever this one holds
        own = set(found)
        for other_file, other in rules:
            if other["id"] == rule_id or item["outcome"] not in other.get("overrides", []):
                continue
            if not all(other["id"] not in p.get("disable_rules", []) and other_file in p["rule_files"] for p in running):
                continue  # somewhere this rule runs without the overriding one
            other_literals, complete = literals[other["id"]]
            if complete and set(other_literals) <= own:
                report.add("error", file, f"rule {rule_id} is unreachable: whenever it holds, rule {other['id']} holds too and overrides {item['outcome']}")


def untested_rules(rules_dir: Path = RULES_DIR) -> dict[str, str]:
    """Rule id -> file, for rules that no test case in rules/*.tests.yaml makes fire (any profile)."""
    rulesets = load_all_rulesets(rules_dir)
    fired: set[str] = set()
    with tempfile.TemporaryDirectory() as scratch:  # the runtime's decision log never touches ./var
        settings = Settings(auth_mode="off", rule_engine="python", rules_dir=rules_dir, database_url=f"sqlite:///{scratch}/lint.db")
        runtime = build_runtime(settings)
        for case in load_cases(rules_dir):
            try:
                evaluation = evaluate_document(runtime, case.request, profile=case.profile, now=case.now)
            except Exception:  # a broken case is `rules test`'s to report
                continue
            fired |= set(evaluation.result.fired_ids())
    return {r.id: r.file for rs in rulesets.values() for r in rs.rules if r.id not in fired}
