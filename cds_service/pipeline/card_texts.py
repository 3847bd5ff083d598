"""Card texts as data: load `rules/cards.yaml`, pick a template, fill its placeholders.

The texts live in YAML so auditors (and the rule catalog) read exactly what a clinician sees.
A template applies only when its condition holds and every placeholder it names has a value,
so a card never shows "None" or an empty blank.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import yaml

from cds_service.engine.conditions import holds
from cds_service.engine.ruleset import RULES_DIR, RuleFileError
from fhir_mappings.datafiles import read_yaml

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
    age_years request_id
    unreadable_resources unreadable_facts withheld_advice count
    """.split()
)


@dataclass(frozen=True)
class Template:
    """One summary or detail sentence and when it applies."""

    text: str
    when: Mapping[str, Any] | None = None
    reasons: tuple[str, ...] = ()

    def names(self) -> set[str]:
        return placeholder_names(self.text)

    def applies(self, facts: Mapping[str, Mapping[str, Any]], params: Mapping[str, Any], reasons: set[str]) -> bool:
        if self.reasons and not (set(self.reasons) & reasons):
            return False
        return self.when is None or holds(self.when, facts, params)


@dataclass(frozen=True)
class OutcomeTexts:
    summaries: tuple[Template, ...]
    detail: tuple[Template, ...]
    suggestions: Mapping[str, str] = field(default_factory=dict)
    child_note: bool = False


@dataclass(frozen=True)
class CardTexts:
    outcomes: Mapping[str, OutcomeTexts]
    common: Mapping[str, str]
    safety: Mapping[str, str]
    source_names: Mapping[str, str]
    override_system: str
    override_codes: tuple[Mapping[str, str], ...]


def placeholder_names(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def _templates(items: Iterable[Any], where: str) -> tuple[Template, ...]:
    out: list[Template] = []
    for item in items or ():
        if isinstance(item, str):
            item = {"text": item}
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise RuleFileError(f"cards.yaml: {where}: each entry needs a text")
        out.append(Template(text=" ".join(item["text"].split()), when=item.get("when"), reasons=tuple(item.get("reasons", ()))))
    return tuple(out)


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
            suggestions={k: " ".join(v.split()) for k, v in (spec.get("suggestions") or {}).items()},
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
        every += [(f"{code}.suggestions.{k}", v) for k, v in spec.suggestions.items()]
        if not spec.summaries or spec.summaries[-1].when is not None or spec.summaries[-1].reasons:
            problems.append(f"{code}: the last summary must have no condition")
    for where, text in every:
        unknown = placeholder_names(text) - PLACEHOLDERS
        if unknown:
            problems.append(f"{where}: unknown placeholder(s) {sorted(unknown)}")
    return problems


def fill(text: str, values: Mapping[str, str | None]) -> str | None:
    """The text with its placeholders filled, or None when one of them has no value."""
    names = placeholder_names(text)
    if any(values.get(name) in (None, "") for name in names):
        return None
    return text.format_map({name: values[name] for name in names})


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


def summary_templates() -> dict[str, list[str]]:
    """Outcome code -> its summary templates, in order: for the rule catalog."""
    return {code: [t.text for t in spec.summaries] for code, spec in load_card_texts().outcomes.items()}
