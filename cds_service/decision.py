"""What one invocation decided, and where its record goes.

`Evaluation` is the record the response, the trace and the decision log are made from; it lives
apart from the pipeline that builds it so that the decision log reads it without importing the
pipeline. `DecisionSink` is what the routes hand records to: the decision log in the service,
a test's own sink elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from cds_service.engine import EngineResult
from cds_service.hooks import CDSRequest, Feedback
from fhir_mappings import FactSet, MappingInput

if TYPE_CHECKING:
    from cds_service.pipeline.services import Service


@dataclass
class Evaluation:
    """Everything one invocation decided, for the response, the trace and the decision log."""

    decision_id: str
    service: Service
    request: CDSRequest
    now: datetime
    inputs: MappingInput
    """What the facts were built from (the resources of prefetch and fetched, the draft orders,
    the Bundle fullUrls): the timeline reads it as the facts did."""
    facts: FactSet
    result: EngineResult
    cards: list[dict[str, Any]]
    """The cards as CDS Hooks JSON (`hooks.Card`), ready for the response."""
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
            "cards": [{"uuid": c["uuid"], "outcome": c["source"]["topic"]["code"]} for c in self.cards],
        }


class DecisionSink(Protocol):
    """Where every invocation and every feedback is recorded (as OPA's decision-log plugin).

    Recording is called on the request path and must not block: a sink queues and writes later.
    """

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def record_decision(self, evaluation: Evaluation) -> None: ...

    def record_failure(
        self, *, decision_id: str, service_id: str, hook: str, hook_instance: str, patient_id: str, status: int, error: str, detail: Any, duration_ms: float
    ) -> None: ...

    def record_feedback(self, service_id: str, feedback: Feedback) -> None: ...

    def healthy(self) -> bool: ...
