"""What one invocation decided: the record the response, the trace and the decision log are made from.

It lives apart from the pipeline that builds it so that the decision log can read it without
importing the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cds_service.engine import EngineResult
from cds_service.hooks import Card, CDSRequest
from fhir_mappings import FactSet

if TYPE_CHECKING:
    from cds_service.pipeline.services import Service


@dataclass
class Evaluation:
    """Everything one invocation decided, for the response, the trace and the decision log."""

    decision_id: str
    service: Service
    request: CDSRequest
    now: datetime
    facts: FactSet
    result: EngineResult
    cards: list[Card]
    duration_ms: float
    fetched_keys: tuple[str, ...] = ()
    """Prefetch keys that were absent and fetched from the EHR's FHIR server."""

    def trace(self) -> dict[str, Any]:
        """The decision trace: fired rules with their facts, silent rules with why, exclusions."""
        sources = self.facts.sources
        return {
            "decision_id": self.decision_id,
            "service": self.service.id,
            "profile": self.service.profile,
            "ruleset_version": self.service.ruleset.version,
            "engine": self.result.engine,
            "now": self.now.isoformat(),
            "fired": [
                {
                    "rule": f.rule.id,
                    "outcome": f.rule.outcome,
                    "reason": f.rule.reason,
                    "facts": {t: list(sources.get(t, ())) for t in f.matched_facts},
                }
                for f in self.result.fired
            ],
            "silent": [{"rule": s.rule.id, "why": s.why} for s in self.result.silent],
            "excluded": [
                {"resource": f"{e.resource_type}/{e.resource_id}", "reason": e.reason} for e in self.facts.exclusions
            ],
            "notes": list(self.facts.notes),
            "unknown": list(self.facts.unknown),
            "unreadable": [{"resource": u.reference, "fact": u.fact, "element": u.element} for u in self.facts.unreadable],
            "withheld": list(self.result.withheld),
            "fetched": list(self.fetched_keys),
            "cards": [{"uuid": c.uuid, "outcome": c.source.topic.code if c.source.topic else None} for c in self.cards],
        }
