"""Fired rules + facts -> CDS Hooks cards a clinician reads in ten seconds.

A card is a plain JSON object (`CardJSON`) shaped as `cds_service.hooks.Card` says, without
`null` members: it goes into the response as it is. Every value comes from this module and the
checked texts of cards.yaml; the tests validate every card they build against the `Card` model
and schemathesis checks the responses against the OpenAPI document.

One card per outcome, its code in `source.topic`. The words, the "Facts used" lines and which
suggestions a card may carry (with the safety rules that leave one out) come from
`rules/cards.yaml`, data an auditor reads. This module renders them: it computes the values the
texts name, builds each suggestion's FHIR resources, and orders the cards.
"""

from __future__ import annotations

import logging
import re
from collections import ChainMap
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, Callable, Iterable, Iterator, Mapping

import yaml

from cds_service.engine import EngineResult, FiredRule
from cds_service.engine.ruleset import RULES_DIR, Rule, RuleSet
from cds_service.ids import new_id
from cds_service.pipeline import suggestions as fhir
from cds_service.pipeline.card_texts import CardTexts, OutcomeTexts, applicable, fill, first_applicable, load_card_texts
from fhir_mappings.datafiles import read_yaml
from fhir_mappings.facts import FactSet

log = logging.getLogger(__name__)

JSON = dict[str, Any]
CardJSON = dict[str, Any]
"""A CDS Hooks card as JSON (`cds_service.hooks.Card`, `null` members left out)."""

OUTCOME_SYSTEM = "https://cds.example.org/rls-iron/outcome"
SEVERITY = {"info": 0, "warning": 1, "critical": 2}
SUMMARY_MAX = 139
LEFT_OUT_MAX = 8
# Outcomes whose suggestion is an adult dose: with the age unknown their detail says why it is left out.
AGE_DEPENDENT_SUGGESTIONS = frozenset({"start-oral-iron"})
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~])")


def build_cards(
    result: EngineResult,
    facts: FactSet,
    ruleset: RuleSet,
    base_url: str = "",
    patient_id: str | None = None,
    now: datetime | date | None = None,
) -> list[CardJSON]:
    """Cards for the fired rules, sorted by severity (critical first) then outcome code."""
    texts = load_card_texts()
    today = _today(facts, now)
    groups = _group(result.fired)
    if not groups:
        return []
    shared = CardFacts(facts, ruleset, today, texts, result.withheld)
    cards = [CardBuilder(code, fired, shared, texts, base_url, patient_id).card() for code, fired in groups.items()]
    cards.sort(key=lambda c: (-SEVERITY[c["indicator"]], c["source"]["topic"]["code"]))
    return cards


def _group(fired: Iterable[FiredRule]) -> dict[str, list[FiredRule]]:
    groups: dict[str, list[FiredRule]] = {}
    for f in fired:
        groups.setdefault(f.rule.outcome, []).append(f)
    return groups


def _today(facts: FactSet, now: datetime | date | None) -> date:
    """The request's calendar date (UTC): from `now`, else from a dated fact, else the clock."""
    if isinstance(now, datetime):
        return (now.astimezone(timezone.utc) if now.tzinfo else now).date()
    if isinstance(now, date):
        return now
    for record in (facts.ferritin, facts.hemoglobin, facts.tsat):
        if record.current and record.date and record.days_ago is not None:
            try:
                return date.fromisoformat(record.date[:10]) + timedelta(days=record.days_ago)
            except ValueError:
                continue
    return datetime.now(timezone.utc).date()


def _num(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _names(items: Iterable[str]) -> str | None:
    unique = list(dict.fromkeys(i for i in items if i))
    return ", ".join(unique) if unique else None


def _escape(value: str | None) -> str | None:
    return None if value is None else _MARKDOWN_SPECIAL.sub(r"\\\1", value)


def _date(value: date | None) -> str | None:
    return value.isoformat() if value else None


@lru_cache(maxsize=1)
def _source_titles() -> dict[str, str]:
    try:
        document = read_yaml(RULES_DIR / "sources.yaml") or {}
    except (OSError, yaml.YAMLError):
        return {}
    return {k: str(v.get("title", k)) for k, v in (document.get("sources") or {}).items() if isinstance(v, dict)}


class _Escaped(Mapping[str, "str | None"]):
    """The card values, markdown-escaped on first use (a card's text uses a handful of them)."""

    def __init__(self, values: Mapping[str, str | None]) -> None:
        self._values = values
        self._escaped: dict[str, str | None] = {}

    def __getitem__(self, name: str) -> str | None:
        if name not in self._escaped:
            self._escaped[name] = _escape(self._values[name])
        return self._escaped[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


class CardFacts:
    """What every card of one response reads (engine view of the facts, course start, recheck
    window, text values): none of it depends on the outcome, so it is computed once per response."""

    def __init__(self, facts: FactSet, ruleset: RuleSet, today: date, texts: CardTexts, withheld: tuple[str, ...] = ()) -> None:
        self.facts = facts
        self.texts = texts
        self.ruleset = ruleset
        self.withheld = withheld
        self.params = ruleset.parameters
        self.today = today
        self.engine_facts = facts.engine_view
        self.course_start = self._course_start()
        self.recheck = self._recheck_window()
        self.values = CardValues(self)
        self.rule_lines = rule_lines(ruleset, texts)

    # -- values -----------------------------------------------------------------------------
    def _course_start(self) -> date:
        """Start of the oral iron course: the EHR's start, else today (a draft or a new start)."""
        ev, oral = self.facts.evidence, self.facts.oral_iron
        if oral.on_record:
            if ev.oral_iron_start_date:
                try:
                    return date.fromisoformat(ev.oral_iron_start_date[:10])
                except ValueError:
                    pass
            if oral.days is not None:
                return self.today - timedelta(days=oral.days)
        return self.today

    def _recheck_window(self) -> tuple[date, date] | None:
        first, last = self.params.get("recheck_window_start_days"), self.params.get("recheck_window_end_days")
        if not isinstance(first, (int, float)) or not isinstance(last, (int, float)):
            return None
        return fhir.recheck_window(self.course_start, self.today, int(first), int(last))

    def _oral_start(self) -> date | None:
        return self.course_start if self.facts.oral_iron.on_record else None

    def _preferred_iv_product(self) -> str:
        return self.ruleset.texts.get("preferred_iv_product") or "IV iron"


def _lab_value(record: Any, value: float | None, unit: str) -> str | None:
    """A current lab as the EHR displayed it, else its canonical value and unit."""
    if not record.current:
        return None
    return record.value_display or (f"{_num(value)} {unit}" if value is not None else None)


def _with_unit(value: str | None, unit: str) -> str | None:
    return f"{value} {unit}" if value else None


def _param(name: str) -> Callable[[CardFacts], str | None]:
    return lambda s: _num(s.params.get(name))


# Each value a card text may name ({placeholder}), computed from the facts and the profile on first
# use: a response's texts name a handful of them.
_VALUES: dict[str, Callable[[CardFacts], str | None]] = {
    "ferritin": lambda s: _lab_value(s.facts.ferritin, s.facts.ferritin.value_ug_per_l, "ug/L"),
    "ferritin_date": lambda s: s.facts.ferritin.date if s.facts.ferritin.current else None,
    "tsat": lambda s: _lab_value(s.facts.tsat, s.facts.tsat.value_pct, "%"),
    "tsat_date": lambda s: s.facts.tsat.date if s.facts.tsat.current else None,
    "hb": lambda s: _lab_value(s.facts.hemoglobin, s.facts.hemoglobin.value_g_dl, "g/dL"),
    "hb_date": lambda s: s.facts.hemoglobin.date if s.facts.hemoglobin.current else None,
    "hb_threshold": lambda s: f"{s.facts.hemoglobin.threshold_g_dl:.1f}" if s.facts.hemoglobin.threshold_g_dl is not None else None,
    "ferritin_low": _param("ferritin_low"),
    "ferritin_threshold": lambda s: s.ruleset.texts.get("ferritin_threshold_text") or _with_unit(_num(s.params.get("ferritin_low")), "ug/L"),
    "ferritin_overload": _param("ferritin_overload"),
    "ferritin_iv_only_high": _param("ferritin_iv_only_high"),
    "adequate_above": lambda s: _num(s.params.get("ferritin_iv_only_high")) or _num(s.params.get("ferritin_low")),
    "tsat_low": _param("tsat_low"),
    "tsat_overload": _param("tsat_overload"),
    "ferritin_lookback_days": _param("ferritin_lookback_days"),
    "tsat_lookback_days": _param("tsat_lookback_days"),
    "oral_days": lambda s: _num(s.facts.oral_iron.days) if s.facts.oral_iron.on_record else None,
    "oral_start": lambda s: _date(s._oral_start()),
    "oral_trial_days": _param("oral_trial_days"),
    "oral_trial_text": lambda s: s.ruleset.texts.get("oral_trial_text")
    or (f"{_num(s.params.get('oral_trial_days'))} days of oral iron before judging it" if s.params.get("oral_trial_days") else None),
    "recheck_start_days": _param("recheck_window_start_days"),
    "recheck_end_days": _param("recheck_window_end_days"),
    "recheck_from": lambda s: _date(s.recheck[0]) if s.recheck else None,
    "recheck_to": lambda s: _date(s.recheck[1]) if s.recheck else None,
    "iv_days_since": lambda s: _num(s.facts.iv_iron.days_since),
    "iv_date": lambda s: s.facts.evidence.iv_iron_date,
    "iv_relief_days": _param("iv_relief_days"),
    "iv_recheck_days": _param("iv_recheck_days"),
    "preferred_iv_product": CardFacts._preferred_iv_product,
    "iv_infusion": lambda s: fhir.infusion_name(s._preferred_iv_product()),
    "dopamine_agonist_caution": lambda s: s.ruleset.texts.get("dopamine_agonist_caution") or None,
    "aggravating_medications": lambda s: _names(s.facts.evidence.aggravating_medication_names),
    "dopamine_agonists": lambda s: _names(s.facts.evidence.dopamine_agonist_names),
    "iv_iron_allergies": lambda s: _names(s.facts.evidence.iv_iron_allergy_names),
    "oral_iron_intolerances": lambda s: _names(s.facts.evidence.oral_iron_intolerance_names),
    "age_years": lambda s: _num(s.facts.patient.age_years),
    "conditions_on_record": lambda s: _names(name for field, name in s.texts.condition_names.items() if s.engine_facts["conditions"].get(field) is True),
    "unreadable_resources": lambda s: _names(f"{u.reference} ({u.fact}; {u.element})" for u in s.facts.unreadable),
    "unreadable_facts": lambda s: _names(u.fact for u in s.facts.unreadable),
    "withheld_advice": lambda s: _names(s.ruleset.outcomes[code].display if code in s.ruleset.outcomes else code for code in s.withheld),
}


class CardValues(Mapping[str, "str | None"]):
    """The values card texts name, each computed on first use and then kept for the response."""

    def __init__(self, shared: CardFacts) -> None:
        self._shared = shared
        self._known: dict[str, str | None] = {}

    def __getitem__(self, name: str) -> str | None:
        known = self._known
        if name not in known:
            known[name] = _VALUES[name](self._shared)  # KeyError for a name that is not a value, as a dict
        return known[name]

    def __iter__(self) -> Iterator[str]:
        return iter(_VALUES)

    def __len__(self) -> int:
        return len(_VALUES)


class CardBuilder:
    """Everything one outcome's card needs, computed once."""

    def __init__(self, code: str, fired: list[FiredRule], shared: CardFacts, texts: CardTexts, base_url: str, patient_id: str | None) -> None:
        self.code = code
        self.fired = sorted(fired, key=lambda f: (f.rule.reason or "~", f.rule.id))
        self.facts = shared.facts
        self.ruleset = shared.ruleset
        self.texts = texts
        self.today = shared.today
        self.base_url = base_url.rstrip("/")
        self.patient_id = patient_id
        self.params = shared.params
        self.engine_facts = shared.engine_facts
        self.reasons = {f.rule.reason for f in fired if f.rule.reason}
        self.spec: OutcomeTexts | None = texts.outcomes.get(code)
        self.course_start = shared.course_start
        self.recheck = shared.recheck
        self.values = shared.values
        self.withheld = shared.withheld
        self.rule_lines = shared.rule_lines

    def _markdown_values(self) -> Mapping[str, str | None]:
        return _Escaped(self.values)

    # -- card -------------------------------------------------------------------------------
    def card(self) -> CardJSON:
        outcome = self.ruleset.outcomes.get(self.code)
        display = outcome.display if outcome else self.code
        default_indicator = outcome.indicator if outcome else "info"
        indicator = max((f.rule.indicator or default_indicator for f in self.fired), key=SEVERITY.__getitem__)
        if outcome and outcome.withheld_indicator and self._iron_family_withheld():
            indicator = max(indicator, outcome.withheld_indicator, key=SEVERITY.__getitem__)
        suggestions = self.suggestions()
        source: dict[str, Any] = {"label": self.ruleset.label}
        if self.base_url:
            source["url"] = f"{self.base_url}/rules/catalog"
            source["icon"] = f"{self.base_url}/static/icon.png"
        source["topic"] = {"system": OUTCOME_SYSTEM, "code": self.code, "display": display}
        card: CardJSON = {"uuid": new_id(), "summary": self.summary(display), "detail": self.detail(), "indicator": indicator, "source": source}
        if suggestions:
            card["suggestions"] = suggestions
            card["selectionBehavior"] = "any" if len(suggestions) > 1 else "at-most-one"
        if self.texts.override_reasons:
            card["overrideReasons"] = [dict(reason) for reason in self.texts.override_reasons]
        links = self.links()
        if links:
            card["links"] = links
        log.debug("card %s from rules %s", self.code, [f.rule.id for f in self.fired])
        return card

    def _iron_family_withheld(self) -> bool:
        outcomes = self.ruleset.outcomes
        return any(code in outcomes and "iron" in outcomes[code].family for code in self.withheld)

    def summary(self, display: str) -> str:
        text = None
        if self.spec:
            text = next(applicable(self.spec.summaries, self.values, self.engine_facts, self.params, self.reasons), None)
        return _shorten(text or display)

    def detail(self) -> str:
        md = self._markdown_values()
        common = self.texts.common
        lines: list[str] = []
        why = list(dict.fromkeys(w for f in self.fired if (w := self._lines(f.rule).reason)))
        if why:
            lines.append(common.get("reasons_heading", "**Why:**"))
            lines += [f"- {w}" for w in why]
            lines.append("")
        sentences = self._safety_sentences(md)  # safety first: read before anything else
        if self.spec:
            sentences += applicable(self.spec.detail, md, self.engine_facts, self.params, self.reasons)
        if sentences:
            lines.append(" ".join(sentences))
            lines.append("")
        used = self._facts_used()
        if used:
            lines.append(f"{common.get('facts_heading', '**Facts used:**')} " + "; ".join(used) + ".")
            lines.append("")
        left_out = self._left_out()
        if left_out:
            lines.append(f"{common.get('left_out_heading', '**Left out:**')} " + "; ".join(left_out) + ".")
            lines.append("")
        sources = self._citations()
        if sources:
            lines.append(common.get("source_heading", "**Source:**"))
            lines += [f"- {s}" for s in sources]
        return "\n".join(lines).strip()

    def _safety_sentences(self, md: Mapping[str, str | None]) -> list[str]:
        """Section 3a texts that depend on the situation, not on a template's condition."""
        safety, out = self.texts.safety, []
        if self.code == "escalate-iv-iron":
            if self.facts.allergies.iv_iron_allergy:
                out.append(fill(safety["iv_allergy"], md) or safety["iv_allergy_unnamed"])
            if self.facts.conditions.pregnancy:
                out.append(safety["pregnancy_iv"])
            elif self.facts.record.pregnancy_unknown:
                out.append(safety["pregnancy_unknown_iv"])
        if self.spec and self.spec.child_note:
            if self.facts.patient.is_child:
                out.append(safety["child"])
            elif not self.facts.patient.age_known and self.code in AGE_DEPENDENT_SUGGESTIONS:
                out.append(safety["age_unknown"])
        return [s for s in out if s]

    def _left_out(self) -> list[str]:
        """The resources of the facts this card read that were left out, and why (at most LEFT_OUT_MAX)."""
        read = {t for f in self.fired for t in f.matched_facts}
        items = list(dict.fromkeys(f"{e.resource_type}/{e.resource_id} ({e.reason})" for e in self.facts.exclusions if e.fact and e.fact in read))
        shown = [_escape(i) or "" for i in items[:LEFT_OUT_MAX]]  # only what is shown is escaped (a large chart leaves out hundreds)
        if len(items) > LEFT_OUT_MAX:
            more = fill(self.texts.common.get("left_out_more", "and {count} more"), {"count": str(len(items) - LEFT_OUT_MAX)})
            shown += [more] if more else []
        return shown

    def _facts_used(self) -> list[str]:
        read = {t for f in self.fired for t in f.matched_facts}
        lines: list[str] = []
        for fact_type, fact_lines in self.texts.facts_used.items():
            if fact_type in read:
                for alternatives in fact_lines:
                    line = first_applicable(alternatives, self.values, self.engine_facts, self.params)
                    if line:
                        lines.append(_escape(line) or "")
        return lines

    def _citations(self) -> list[str]:
        """The fired rules' citation lines, each once (two rules may cite the same passage)."""
        return list(dict.fromkeys(line for f in self.fired if (line := self._lines(f.rule).citation)))

    def _lines(self, rule: Rule) -> RuleLines:
        """The rule's lines made with its rule set, or made now for a rule from elsewhere."""
        lines = self.rule_lines.get(rule.id)
        return lines if lines is not None and lines.rule is rule else _rule_lines(rule, self.ruleset, self.texts)

    def links(self) -> list[JSON]:
        links, seen = [], set()
        for f in self.fired:
            if f.rule.id in seen:
                continue
            seen.add(f.rule.id)
            links.append({"label": f"Rule {f.rule.id}", "url": f"{self.base_url}/rules/catalog#{f.rule.id}", "type": "absolute"})
        return links

    # -- suggestions --------------------------------------------------------------------------
    def _label(self, kind: str, **extra: str) -> str:
        spec = self.spec.suggestions.get(kind) if self.spec else None
        template = spec.label if spec else kind
        return _shorten(fill(template, ChainMap(extra, self.values)) or template.split("{")[0].strip() or kind)

    def suggestions(self) -> list[JSON]:
        """The suggestions cards.yaml lists for this outcome, in order, except those its `unless` leaves out."""
        if not self.patient_id or not self.spec:
            return []
        out: list[JSON] = []
        for kind, spec in self.spec.suggestions.items():
            if spec.offered(self.engine_facts, self.params):
                out += self._SUGGESTION_BUILDERS[kind](self)
        return out

    def _note(self) -> str:
        return self.texts.safety["iron_studies_note"]

    def _recheck_action(self) -> JSON:
        assert self.recheck is not None
        return {
            "type": "create",
            "description": f"Order a ferritin recheck {self.recheck[0].isoformat()} to {self.recheck[1].isoformat()}",
            "resource": fhir.ferritin_recheck_request(self.patient_id or "", *self.recheck, note=self._note()),
        }

    def _suggest_oral_iron(self) -> list[JSON]:
        if self.recheck is None:
            return []
        order = dict(type="create", description="Order ferrous sulfate 325 mg oral tablet, once daily", resource=fhir.oral_iron_request(self.patient_id or ""))
        return [dict(label=self._label("oral_iron"), uuid=new_id(), isRecommended=True, actions=[order, self._recheck_action()])]

    def _suggest_recheck(self) -> list[JSON]:
        if self.recheck is None:
            return []
        return [dict(label=self._label("recheck"), uuid=new_id(), isRecommended=True, actions=[self._recheck_action()])]

    def _suggest_iron_studies(self) -> list[JSON]:
        pid, note = self.patient_id or "", self._note()
        actions = [
            dict(type="create", description="Order serum ferritin (LOINC 2276-4)", resource=fhir.ferritin_request(pid, note)),
            dict(type="create", description="Order iron panel with transferrin saturation (LOINC 50190-5)", resource=fhir.iron_panel_request(pid, note)),
        ]
        return [dict(label=self._label("iron_studies"), uuid=new_id(), isRecommended=True, actions=actions)]

    def _suggest_referral(self) -> list[JSON]:
        reasons = [f"({f.rule.reason}) {f.rule.reason_text}" for f in self.fired if f.rule.reason and f.rule.reason_text]
        resource = fhir.iv_iron_referral(self.patient_id or "", self.values["preferred_iv_product"] or "IV iron", reasons)
        action = dict(type="create", description=f"Refer for {self.values['iv_infusion']}", resource=resource)
        return [dict(label=self._label("referral"), uuid=new_id(), isRecommended=True, actions=[action])]

    def _suggest_stop(self) -> list[JSON]:
        """A delete per active iron MedicationRequest from the EHR's data; drafts are never listed there."""
        out = []
        for request_id in dict.fromkeys(self.facts.evidence.active_iron_request_ids):
            if not request_id:
                continue
            ref = request_id if request_id.startswith("MedicationRequest/") else f"MedicationRequest/{request_id}"
            action = dict(type="delete", description=f"Stop the active iron order {ref}", resourceId=ref)
            out.append(dict(label=self._label("stop", request_id=ref), uuid=new_id(), actions=[action]))
        return out

    _SUGGESTION_BUILDERS: Mapping[str, Callable[["CardBuilder"], list[JSON]]] = {
        "oral_iron": _suggest_oral_iron,
        "recheck": _suggest_recheck,
        "iron_studies": _suggest_iron_studies,
        "referral": _suggest_referral,
        "stop": _suggest_stop,
    }
    """How each suggestion kind cards.yaml may name (card_texts.SUGGESTION_KINDS) is built as FHIR resources."""


@dataclass(frozen=True)
class RuleLines:
    """What a card says of one fired rule, whatever the chart: its "Why" line and its citation line."""

    rule: Rule
    reason: str
    citation: str | None


def rule_lines(ruleset: RuleSet, texts: CardTexts) -> Mapping[str, RuleLines]:
    """Rule id -> its lines: a function of the rule files, the profile's parameters and the card
    texts only, so made once per rule set and texts (`RuleSet.derived`), not per card."""
    made_with, lines = ruleset.derived.get("card_rule_lines", (None, None))
    if made_with is not texts or lines is None:
        lines = {rule.id: _rule_lines(rule, ruleset, texts) for rule in ruleset.rules}
        ruleset.derived["card_rule_lines"] = (texts, lines)
    return lines


def _rule_lines(rule: Rule, ruleset: RuleSet, texts: CardTexts) -> RuleLines:
    return RuleLines(rule, _reason_line(rule, ruleset), _citation_line(rule, texts))


def _reason_line(rule: Rule, ruleset: RuleSet) -> str:
    text = _escape(_with_parameter_values(rule.reason_text or rule.title, ruleset)) or ""
    return f"({rule.reason}) {text}" if rule.reason else text


def _with_parameter_values(text: str, ruleset: RuleSet) -> str:
    """Rule titles may name parameters (`oral_trial_days`); a clinician reads their values."""
    params = ruleset.parameters

    def value(match: re.Match[str]) -> str:
        name = match.group(0)
        number = _num(params.get(name))
        if number is None:
            return name.replace("_", " ")
        unit = str((ruleset.parameter_docs.get(name) or {}).get("unit", ""))
        unit = {"d": "days", "%": "%"}.get(unit, unit)
        return f"{number} {unit}".strip()

    if not params:
        return text
    return _parameter_pattern(tuple(params)).sub(value, text)


def _citation_line(rule: Rule, texts: CardTexts) -> str | None:
    citation = rule.citation or {}
    source, text = str(citation.get("source", "")), " ".join(str(citation.get("text", "")).split())
    if not text:
        return None
    if source == "article":
        line = f"{texts.common.get('article_prefix', 'the article states:')} {text}"
        return line[0].upper() + line[1:]
    name = texts.source_names.get(source) or _source_titles().get(source) or source
    line = f"{name}: {text}"
    if citation.get("strength"):
        line += f" (strength: {citation['strength']})"
    return line


@lru_cache(maxsize=8)
def _parameter_pattern(names: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(r"\b(" + "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) + r")\b")


def _shorten(text: str) -> str:
    """Under 140 characters, cut at a word boundary with an ellipsis when needed."""
    text = " ".join(text.split())
    if len(text) <= SUMMARY_MAX:
        return text
    cut = text[: SUMMARY_MAX - 1].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + "…"
