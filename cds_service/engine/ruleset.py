"""Rule files and profiles: load, validate against the JSON Schemas, and check references.

A `RuleSet` is one profile's rules with its parameter values bound. It is built once at
start-up; an invalid file stops the service with a message naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Mapping

import jsonschema
import yaml

from cds_service.engine.explain import Explainer
from fhir_mappings.datafiles import read_yaml
from fhir_mappings.facts import FACT_TYPES_BY_NAME, fact_schema

RULES_DIR = Path(__file__).resolve().parents[2] / "rules"
VALUESETS_DIR = Path(__file__).resolve().parents[2] / "fhir_mappings" / "valuesets"


class RuleFileError(ValueError):
    """A rule, profile or outcome file is invalid; the message names the file and the problem."""


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    outcome: str
    when: Mapping[str, Any]
    citation: Mapping[str, Any]
    file: str
    indicator: str | None = None
    reason: str | None = None
    reason_text: str | None = None
    overrides: tuple[str, ...] = ()
    description: str | None = None
    notes: str | None = None

    def leaves(self) -> tuple[Mapping[str, Any], ...]:
        """The leaf tests of this rule's condition, depth first, in file order (made once per rule)."""
        cached = self.__dict__.get("_leaves")
        if cached is None:
            cached = tuple(iter_leaves(self.when))
            object.__setattr__(self, "_leaves", cached)
        return cached

    def fields(self) -> tuple[tuple[str, str], ...]:
        """The (fact, field) pairs this rule reads, sorted."""
        cached = self.__dict__.get("_fields")
        if cached is None:
            cached = tuple(sorted({(leaf["fact"], leaf["field"]) for leaf in iter_leaves(self.when)}))
            object.__setattr__(self, "_fields", cached)
        return cached

    def fact_types(self) -> tuple[str, ...]:
        """The fact types this rule reads, sorted: used for matched facts and unknown-data silencing."""
        cached = self.__dict__.get("_fact_types")
        if cached is None:  # computed once per rule (every evaluation asks for it)
            cached = tuple(sorted({leaf["fact"] for leaf in iter_leaves(self.when)}))
            object.__setattr__(self, "_fact_types", cached)
        return cached


@dataclass(frozen=True)
class Outcome:
    code: str
    display: str
    indicator: str
    family: tuple[str, ...] = ()
    withheld_indicator: str | None = None
    """The indicator when a card of the iron family was withheld for unknown data (review-unreadable-record)."""
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RuleSet:
    """One profile: its rules (in file order), parameters and outcome definitions."""

    profile: str
    title: str
    label: str
    service_prefix: str
    rules: tuple[Rule, ...]
    parameters: Mapping[str, float | int | None]
    parameter_docs: Mapping[str, Mapping[str, Any]]
    outcomes: Mapping[str, Outcome]
    texts: Mapping[str, str]
    version: str
    default: bool = False
    """The profile used when none is named, listed first."""
    shared_conditions: Mapping[str, SharedCondition] = field(default_factory=dict)
    """The shared conditions its rules may name (rules/conditions.yaml)."""
    derived: dict[str, Any] = field(default_factory=dict, init=False, compare=False, repr=False)
    """What later stages compute once from this rule set alone (the cards' rule lines), by name; a
    copy made with dataclasses.replace starts empty."""

    @property
    def short_name(self) -> str:
        """The profile's title without its parenthesised remarks: "Article profile", "AASM 2024 guideline profile"."""
        return self.title.split(" (")[0]

    @cached_property
    def explainer(self) -> Explainer:
        """The rules' conditions compiled once, to say why each silent rule did not hold."""
        return Explainer([rule.when for rule in self.rules], self.parameters)

    def rule(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)


def iter_leaves(condition: Mapping[str, Any]):
    """Every leaf test of a condition tree, depth first, in file order."""
    for key in ("all", "any", "none"):
        if key in condition:
            for child in condition[key]:
                yield from iter_leaves(child)
            return
    yield condition


def _read_yaml(path: Path) -> Any:
    try:
        return read_yaml(path)
    except (OSError, yaml.YAMLError) as exc:
        raise RuleFileError(f"{path.name}: cannot be read as YAML: {exc}") from exc


@lru_cache(maxsize=None)
def _schema(name: str) -> dict[str, Any]:
    return json.loads((RULES_DIR / name).read_text(encoding="utf-8"))


CONDITION_KEYS = {"all", "any", "none", "fact", "field", "is", "op", "param", "equals", "condition"}
CONDITIONS_FILE = "conditions.yaml"


@dataclass(frozen=True)
class SharedCondition:
    """A condition that several rules require, defined once in rules/conditions.yaml."""

    name: str
    title: str
    when: Mapping[str, Any]
    citation: Mapping[str, Any]
    description: str | None = None


def load_shared_conditions(rules_dir: Path = RULES_DIR) -> dict[str, SharedCondition]:
    """The shared conditions by name (none when the file is absent)."""
    path = rules_dir / CONDITIONS_FILE
    if not path.is_file():
        return {}
    document = _read_yaml(path)
    _validate(document, "schema.json", path)
    shared: dict[str, SharedCondition] = {}
    for item in document.get("conditions", []):
        if item["name"] in shared:
            raise RuleFileError(f"{path.name}: shared condition {item['name']} is defined twice")
        if any("condition" in leaf for leaf in iter_leaves(item["when"])):
            raise RuleFileError(f"{path.name}: shared condition {item['name']} names another one; write it out")
        shared[item["name"]] = SharedCondition(item["name"], item["title"], item["when"], item["citation"], item.get("description"))
    return shared


def expand_shared(condition: Mapping[str, Any], shared: Mapping[str, SharedCondition], where: str) -> dict[str, Any]:
    """The condition with each {condition: name} replaced by a one-child `all` group that keeps
    its name (`named`): the evaluators read the group like any other, and the explanations and the
    catalog show the name."""
    if "condition" in condition:
        name = condition["condition"]
        if name not in shared:
            raise RuleFileError(f"{where}: unknown shared condition {name!r} (see rules/{CONDITIONS_FILE})")
        return {"all": [dict(shared[name].when)], "named": name}
    for key in ("all", "any", "none"):
        if key in condition:
            return {key: [expand_shared(child, shared, where) for child in condition[key]]}
    return dict(condition)


def condition_hint(error: jsonschema.ValidationError) -> tuple[list[Any], str] | None:
    """A readable message for a condition that matches none of the forms (a oneOf failure)."""
    deepest = None
    stack = [error]
    while stack:  # the innermost failing condition is the one to talk about
        current = stack.pop()
        if current.validator == "oneOf" and isinstance(current.instance, dict):
            if deepest is None or len(current.absolute_path) > len(deepest.absolute_path):
                deepest = current
        stack.extend(current.context or [])
    if deepest is None:
        return None
    instance = deepest.instance
    where = list(deepest.absolute_path)
    unknown = sorted(set(instance) - CONDITION_KEYS)
    if unknown:
        return where, f"unknown key(s) {', '.join(map(repr, unknown))} in a condition"
    return where, ("not a condition: use one of all / any / none, or a test with fact and field and exactly "
                   "one of `is`, `op` with `param`, or `equals`")


def _validate(document: Any, schema_name: str, path: Path) -> None:
    validator = jsonschema.Draft202012Validator(_schema(schema_name))
    errors = sorted(validator.iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        hint = next((h for h in map(condition_hint, errors) if h), None)
        where = "/".join(str(p) for p in (hint[0] if hint else best.absolute_path)) or "(top)"
        raise RuleFileError(f"{path.name}: {where}: {hint[1] if hint else best.message}")


def load_outcomes(rules_dir: Path = RULES_DIR) -> dict[str, Outcome]:
    path = rules_dir / "outcomes.yaml"
    document = _read_yaml(path)
    outcomes: dict[str, Outcome] = {}
    for item in document.get("outcomes", []):
        outcomes[item["code"]] = Outcome(
            code=item["code"],
            display=item["display"],
            indicator=item["indicator"],
            family=tuple(item.get("family", [])),
            withheld_indicator=item.get("withheld_indicator"),
            raw=item,
        )
    return outcomes


def check_rule_references(rule: Rule, parameters: Mapping[str, Any], outcomes: Mapping[str, Outcome]) -> list[str]:
    """Problems with a rule's names: unknown fact, field, parameter or outcome. Empty when sound."""
    problems: list[str] = []
    schema = fact_schema()
    if rule.outcome not in outcomes:
        problems.append(f"rule {rule.id}: unknown outcome code {rule.outcome!r}")
    for code in rule.overrides:
        if code not in outcomes:
            problems.append(f"rule {rule.id}: overrides unknown outcome code {code!r}")
    for leaf in iter_leaves(rule.when):
        fact, name = leaf["fact"], leaf["field"]
        if fact not in FACT_TYPES_BY_NAME:
            problems.append(f"rule {rule.id}: unknown fact {fact!r}")
            continue
        if name not in schema[fact]:
            problems.append(f"rule {rule.id}: unknown field {fact}.{name}")
            continue
        field_type = schema[fact][name]["type"]
        if "is" in leaf and "bool" not in field_type:
            problems.append(f"rule {rule.id}: {fact}.{name} is not a boolean field")
        if "op" in leaf:
            if "int" not in field_type and "float" not in field_type:
                problems.append(f"rule {rule.id}: {fact}.{name} is not a numeric field")
            if leaf["param"] not in parameters:
                problems.append(f"rule {rule.id}: unknown parameter {leaf['param']!r}")
        if "equals" in leaf and "str" not in field_type:
            problems.append(f"rule {rule.id}: {fact}.{name} is not a text field")
    return problems


def _load_rules(path: Path, shared: Mapping[str, SharedCondition]) -> list[Rule]:
    document = _read_yaml(path)
    _validate(document, "schema.json", path)
    return [
        Rule(
            id=item["id"],
            title=item["title"],
            outcome=item["outcome"],
            when=expand_shared(item["when"], shared, f"{path.name}: rule {item['id']}"),
            citation=item["citation"],
            file=path.name,
            indicator=item.get("indicator"),
            reason=item.get("reason"),
            reason_text=item.get("reason_text"),
            overrides=tuple(item.get("overrides", [])),
            description=item.get("description"),
            notes=item.get("notes"),
        )
        for item in document.get("rules", [])
    ]


def ruleset_version(rules_dir: Path = RULES_DIR, valuesets_dir: Path = VALUESETS_DIR) -> str:
    """Content hash of every rule, profile, outcome and value-set file: what "rule-set version" means."""
    digest = hashlib.sha256()
    paths = sorted(p for p in rules_dir.rglob("*") if p.is_file() and p.suffix in {".yaml", ".yml", ".json"})
    paths += sorted(p for p in valuesets_dir.rglob("*") if p.is_file() and p.suffix in {".yaml", ".yml", ".json"})
    for path in paths:
        if path.name.endswith(".tests.yaml"):
            continue
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return "sha256:" + digest.hexdigest()[:16]


def profile_paths(rules_dir: Path = RULES_DIR) -> list[Path]:
    return sorted((rules_dir / "profiles").glob("*.yaml"))


def _cite_for_profile(rules: list[Rule], citations: Mapping[str, Any], profile_path: Path) -> list[Rule]:
    """A profile may cite its own source for a shared rule (the guideline, not the article).

    The rule's logic is shared; what it encodes in this profile is the profile's source's
    statement, so cards and the catalog quote that instead of the rule file's citation.
    """
    unknown = set(citations) - {rule.id for rule in rules}
    if unknown:
        raise RuleFileError(f"{profile_path.name}: citations for unknown or disabled rules {sorted(unknown)}")
    return [replace(rule, citation=citations[rule.id]) if rule.id in citations else rule for rule in rules]


def load_ruleset(profile_path: Path, rules_dir: Path = RULES_DIR) -> RuleSet:
    """Load one profile and its rule files; raise RuleFileError naming the file on any problem."""
    profile = _read_yaml(profile_path)
    _validate(profile, "profile.schema.json", profile_path)
    parameters = {name: spec["value"] for name, spec in profile["parameters"].items()}
    outcomes = load_outcomes(rules_dir)
    disabled = set(profile.get("disable_rules", []))
    shared = load_shared_conditions(rules_dir)
    rules: list[Rule] = []
    seen: set[str] = set()
    for name in profile["rule_files"]:
        path = rules_dir / name
        if not path.is_file():
            raise RuleFileError(f"{profile_path.name}: rule file {name} does not exist")
        for rule in _load_rules(path, shared):
            if rule.id in seen:
                raise RuleFileError(f"{path.name}: rule id {rule.id} is defined twice")
            seen.add(rule.id)
            problems = check_rule_references(rule, parameters, outcomes)
            if problems:
                raise RuleFileError(f"{path.name}: " + "; ".join(problems))
            if rule.id not in disabled:
                rules.append(rule)
    unknown_disabled = disabled - seen
    if unknown_disabled:
        raise RuleFileError(f"{profile_path.name}: disables unknown rules {sorted(unknown_disabled)}")
    rules = _cite_for_profile(rules, profile.get("citations", {}), profile_path)
    return RuleSet(
        profile=profile["profile"],
        title=profile["title"],
        label=profile["label"],
        service_prefix=profile.get("service_prefix", "rls-iron"),
        rules=tuple(rules),
        parameters=parameters,
        parameter_docs=profile["parameters"],
        outcomes=outcomes,
        texts=profile.get("texts", {}),
        version=ruleset_version(rules_dir),
        default=bool(profile.get("default", False)),
        shared_conditions=shared,
    )


def load_all_rulesets(rules_dir: Path = RULES_DIR) -> dict[str, RuleSet]:
    """Every profile in rules/profiles/, by profile name: the default profile first, then by name."""
    loaded = [load_ruleset(path, rules_dir) for path in profile_paths(rules_dir)]
    if not loaded:
        raise RuleFileError(f"{rules_dir}: no profile in profiles/")
    defaults = [rs.profile for rs in loaded if rs.default]
    if len(defaults) > 1:
        raise RuleFileError(f"{rules_dir / 'profiles'}: more than one default profile: {defaults}")
    loaded.sort(key=lambda rs: (not rs.default, rs.profile))
    return {rs.profile: rs for rs in loaded}
