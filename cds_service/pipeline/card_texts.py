"""Card texts as data: load `rules/cards.yaml`, pick a template, fill its placeholders.

The texts live in YAML so auditors (and the rule catalog) read exactly what a clinician sees.
A template applies only when its condition holds and every placeholder it names has a value,
so a card never shows "None" or an empty blank.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from functools import cache, cached_property, lru_cache
from pathlib import Path
from typing import AbstractSet, Any, Iterable, Iterator, Mapping

import yaml

from cds_service.engine.conditions import Test, compile_condition
from cds_service.engine.ruleset import RULES_DIR, RuleFileError, iter_leaves
from fhir_mappings.datafiles import read_yaml
from fhir_mappings.facts import fact_schema

CARDS_FILE = RULES_DIR / "cards.yaml"

PLACEHOLDERS = frozenset(
    """
    ferritin ferritin_date tsat tsat_date hb hb_date hb_threshold
    ferritin_low ferritin_threshold ferritin_overload ferritin_iv_only_high adequate_above
    tsat_low tsat_overload ferritin_lookback_days tsat_lookback_days
    oral_days oral_start oral_trial_days oral_trial_text
    recheck_start_days recheck_end_days recheck_from recheck_to
    iv_days_since iv_date iv_relief_days iv_recheck_days
    preferred_iv_product iv_infusion dopamine_agonist_caution
    aggravating_medications dopamine_agonists iv_iron_allergies oral_iron_intolerances
    age_years request_id conditions_on_record
    unreadable_resources unreadable_facts withheld_advice count
    """.split()
)

SUGGESTION_KINDS = frozenset({"oral_iron", "recheck", "iron_studies", "referral", "stop"})
"""The suggestions the card builder knows how to build as FHIR resources."""


@dataclass(frozen=True)
class Template:
    """One summary or detail sentence and when it applies (its condition compiled at load)."""

    text: str
    when: Mapping[str, Any] | None = None
    reasons: tuple[str, ...] = ()
    test: Test | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.when is not None and self.test is None:
            object.__setattr__(self, "test", compile_condition(self.when))

    def names(self) -> frozenset[str]:
        return placeholder_names(self.text)

    def applies(self, facts: Mapping[str, Mapping[str, Any]], params: Mapping[str, Any], reasons: AbstractSet[str]) -> bool:
        if self.reasons and reasons.isdisjoint(self.reasons):
            return False
        return self.test is None or self.test(facts, params)


@dataclass(frozen=True)
class SuggestionText:
    """One suggestion a card may offer: its label, and when the safety rules leave it out."""

    label: str
    unless: Mapping[str, Any] | None = None
    because: str = ""
    test: Test | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.unless is not None and self.test is None:
            object.__setattr__(self, "test", compile_condition(self.unless))

    def offered(self, facts: Mapping[str, Mapping[str, Any]], params: Mapping[str, Any]) -> bool:
        return self.test is None or not self.test(facts, params)


@dataclass(frozen=True)
class OutcomeTexts:
    summaries: tuple[Template, ...]
    detail: tuple[Template, ...]
    suggestions: Mapping[str, SuggestionText] = field(default_factory=dict)
    child_note: bool = False


@dataclass(frozen=True, eq=False)
class CardTexts:
    outcomes: Mapping[str, OutcomeTexts]
    common: Mapping[str, str]
    safety: Mapping[str, str]
    source_names: Mapping[str, str]
    override_system: str
    override_codes: tuple[Mapping[str, str], ...]
    facts_used: Mapping[str, tuple[tuple[Template, ...], ...]] = field(default_factory=dict)
    """Fact type -> its "Facts used" lines, each a list of alternatives (first that applies wins)."""
    condition_names: Mapping[str, str] = field(default_factory=dict)

    @cached_property
    def override_reasons(self) -> tuple[Mapping[str, str], ...]:
        """The override reasons every card offers, as card JSON (`hooks.OverrideReason`), built once."""
        reasons = []
        for c in self.override_codes:
            reason = {"code": c["code"]}
            if self.override_system:
                reason["system"] = self.override_system
            if c.get("display"):
                reason["display"] = c["display"]
            reasons.append(reason)
        return tuple(reasons)


@cache
def placeholder_names(text: str) -> frozenset[str]:
    """The {placeholders} of a text from cards.yaml (kept per text: the texts are the file's)."""
    return frozenset(name for _, name, _, _ in string.Formatter().parse(text) if name)


def _templates(items: Iterable[Any], where: str) -> tuple[Template, ...]:
    out: list[Template] = []
    for item in items or ():
        if isinstance(item, str):
            item = {"text": item}
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise RuleFileError(f"cards.yaml: {where}: each entry needs a text")
        out.append(Template(text=" ".join(item["text"].split()), when=item.get("when"), reasons=tuple(item.get("reasons", ()))))
    return tuple(out)


def _suggestions(items: Mapping[str, Any] | None, where: str) -> dict[str, SuggestionText]:
    out: dict[str, SuggestionText] = {}
    for kind, item in (items or {}).items():
        if isinstance(item, str):
            item = {"label": item}
        if not isinstance(item, dict) or not isinstance(item.get("label"), str):
            raise RuleFileError(f"cards.yaml: {where}.{kind}: a suggestion needs a label")
        out[kind] = SuggestionText(label=" ".join(item["label"].split()), unless=item.get("unless"), because=str(item.get("because", "")))
    return out


def _fact_lines(document: Mapping[str, Any] | None) -> dict[str, tuple[tuple[Template, ...], ...]]:
    return {
        fact_type: tuple(_templates(alternatives, f"facts_used.{fact_type}") for alternatives in lines or ())
        for fact_type, lines in (document or {}).items()
    }


@lru_cache(maxsize=4)
def load_card_texts(path: Path = CARDS_FILE) -> CardTexts:
    """Read and check cards.yaml once (at the first card); an unknown placeholder raises RuleFileError naming the file."""
    try:
        document = read_yaml(path)
    except (OSError, yaml.YAMLError) as exc:
        raise RuleFileError(f"{path.name}: cannot be read as YAML: {exc}") from exc
    outcomes = {
        code: OutcomeTexts(
            summaries=_templates(spec.get("summaries"), f"{code}.summaries"),
            detail=_templates(spec.get("detail"), f"{code}.detail"),
            suggestions=_suggestions(spec.get("suggestions"), f"{code}.suggestions"),
            child_note=bool(spec.get("child_note", False)),
        )
        for code, spec in (document.get("outcomes") or {}).items()
    }
    override = document.get("override_reasons") or {}
    texts = CardTexts(
        outcomes=outcomes,
        common={k: " ".join(str(v).split()) for k, v in (document.get("common") or {}).items()},
        safety={k: " ".join(str(v).split()) for k, v in (document.get("safety") or {}).items()},
        source_names=dict(document.get("source_names") or {}),
        override_system=override.get("system", ""),
        override_codes=tuple(override.get("codes", ())),
        facts_used=_fact_lines(document.get("facts_used")),
        condition_names=dict(document.get("condition_names") or {}),
    )
    problems = check_card_texts(texts)
    if problems:
        raise RuleFileError(f"{path.name}: " + "; ".join(problems))
    return texts


def check_card_texts(texts: CardTexts) -> list[str]:
    """Unknown placeholders, and summary lists without a final unconditional entry."""
    problems: list[str] = []
    every = [(f"safety.{k}", v) for k, v in texts.safety.items()] + [(f"common.{k}", v) for k, v in texts.common.items()]
    for code, spec in texts.outcomes.items():
        every += [(f"{code}.summaries", t.text) for t in spec.summaries]
        every += [(f"{code}.detail", t.text) for t in spec.detail]
        every += [(f"{code}.suggestions.{k}", v.label) for k, v in spec.suggestions.items()]
        problems += [f"{code}.suggestions.{k}: unknown suggestion kind (known: {sorted(SUGGESTION_KINDS)})" for k in spec.suggestions if k not in SUGGESTION_KINDS]
        if not spec.summaries or spec.summaries[-1].when is not None or spec.summaries[-1].reasons:
            problems.append(f"{code}: the last summary must have no condition")
    for fact_type, lines in texts.facts_used.items():
        every += [(f"facts_used.{fact_type}", t.text) for alternatives in lines for t in alternatives]
    problems += _unknown_fields(texts)
    for where, text in every:
        unknown = placeholder_names(text) - PLACEHOLDERS
        if unknown:
            problems.append(f"{where}: unknown placeholder(s) {sorted(unknown)}")
    return problems


def _unknown_fields(texts: CardTexts) -> list[str]:
    """Conditions (`when`, `unless`) and fact types that name a fact or field the mapping never produces."""
    schema = fact_schema()
    conditions: list[tuple[str, Mapping[str, Any] | None]] = []
    for code, spec in texts.outcomes.items():
        conditions += [(f"{code}.summaries", t.when) for t in spec.summaries] + [(f"{code}.detail", t.when) for t in spec.detail]
        conditions += [(f"{code}.suggestions.{k}", s.unless) for k, s in spec.suggestions.items()]
    for fact_type, lines in texts.facts_used.items():
        conditions += [(f"facts_used.{fact_type}", t.when) for alternatives in lines for t in alternatives]
    problems = [f"facts_used.{t}: no such fact type" for t in texts.facts_used if t not in schema]
    problems += [f"condition_names.{c}: no such conditions field" for c in texts.condition_names if c not in schema["conditions"]]
    for where, condition in conditions:
        for leaf in iter_leaves(condition) if condition else ():
            if leaf.get("field") not in schema.get(leaf.get("fact"), {}):
                problems.append(f"{where}: no fact field {leaf.get('fact')}.{leaf.get('field')}")
    return problems


def fill(text: str, values: Mapping[str, str | None]) -> str | None:
    """The text with its placeholders filled, or None when one of them has no value."""
    names = placeholder_names(text)
    for name in names:
        if not values.get(name):
            return None
    return text.format_map(values) if names else text


NO_REASONS: frozenset[str] = frozenset()
"""A "Facts used" line is chosen by the facts alone: a template naming reasons never applies there."""


def applicable(
    templates: Iterable[Template],
    values: Mapping[str, str | None],
    facts: Mapping[str, Mapping[str, Any]],
    params: Mapping[str, Any],
    reasons: set[str],
) -> Iterator[str]:
    """The filled texts of the templates that apply, in order; one with a value missing is skipped."""
    for template in templates:
        if template.applies(facts, params, reasons):
            text = fill(template.text, values)
            if text:
                yield text


def first_applicable(
    alternatives: Iterable[Template],
    values: Mapping[str, str | None],
    facts: Mapping[str, Mapping[str, Any]],
    params: Mapping[str, Any],
) -> str | None:
    """The first alternative that applies and has every value, filled; None when none does."""
    for template in alternatives:
        if template.applies(facts, params, NO_REASONS):
            text = fill(template.text, values)
            if text:
                return text
    return None


def summary_templates() -> dict[str, list[str]]:
    """Outcome code -> its summary templates, in order: for the rule catalog."""
    return {code: [t.text for t in spec.summaries] for code, spec in load_card_texts().outcomes.items()}
