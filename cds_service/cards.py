"""Outcomes to CDS Hooks cards: one card per outcome, carrying its code in source.topic."""

from __future__ import annotations

import uuid
from typing import Iterable

from cds_service.engine import EngineResult, FiredRule
from cds_service.engine.ruleset import RuleSet
from cds_service.models import Card, Coding, Link, Source
from fhir_mappings.facts import FactSet

OUTCOME_SYSTEM = "https://cds.example.org/rls-iron/outcome"
SEVERITY = {"info": 0, "warning": 1, "critical": 2}


def _group(fired: Iterable[FiredRule]) -> dict[str, list[FiredRule]]:
    groups: dict[str, list[FiredRule]] = {}
    for f in fired:
        groups.setdefault(f.rule.outcome, []).append(f)
    return groups


def build_cards(result: EngineResult, facts: FactSet, ruleset: RuleSet, base_url: str = "", patient_id: str | None = None) -> list[Card]:
    cards: list[Card] = []
    for code, fired in _group(result.fired).items():
        outcome = ruleset.outcomes[code]
        indicator = max((f.rule.indicator or outcome.indicator for f in fired), key=SEVERITY.__getitem__)
        ferritin = facts.ferritin
        used = f"Ferritin {ferritin.value_display} ({ferritin.date})" if ferritin.current else "No current ferritin"
        detail = "\n".join(
            [f"**{outcome.display}**", "", f"- {used}", ""]
            + [f"- Rule `{f.rule.id}`: {f.rule.title}. Source: {f.rule.citation['text']}" for f in fired]
        )
        cards.append(
            Card(
                uuid=str(uuid.uuid4()),
                summary=f"{outcome.display}: {used}"[:140],
                detail=detail,
                indicator=indicator,
                source=Source(label=ruleset.label, topic=Coding(system=OUTCOME_SYSTEM, code=code, display=outcome.display)),
                links=[Link(label=f"Rule {f.rule.id}", url=f"{base_url}/rules/catalog#{f.rule.id}") for f in fired],
            )
        )
    return cards
