"""The one-way pipeline: request -> resources -> facts -> rules -> outcomes -> cards."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

from cds_service.cards import build_cards
from cds_service.engine import EngineError, EngineResult, RuleEngine
from cds_service.errors import BadRequest, EngineUnavailable
from cds_service.ids import new_id
from cds_service.models import Card, CDSRequest
from cds_service.prefetch import PrefetchData, draft_orders
from cds_service.services import Service
from fhir_mappings import FactSet, MappingInput, build_facts
from fhir_mappings.errors import MappingInputError


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


def evaluate(
    request: CDSRequest,
    service: Service,
    engine: RuleEngine,
    data: PrefetchData,
    now: datetime | None = None,
    base_url: str = "",
) -> Evaluation:
    """Facts, rules and cards for data already gathered. Synchronous: the engine runs on the
    caller's thread. The offline CLI and the test page call it directly; `answer` gathers first."""
    started = time.perf_counter()
    now = now or datetime.now(timezone.utc)
    mapping_input = MappingInput(
        resources=data.resources,
        patient_id=request.context.patientId,
        now=now,
        params=service.ruleset.parameters,
        hook=request.hook,
        draft_orders=draft_orders(request),
        unknown_keys=frozenset(data.unknown_keys),
        full_urls=data.full_urls,
    )
    try:
        facts = build_facts(mapping_input)
    except MappingInputError as exc:
        raise BadRequest(str(exc)) from exc
    try:
        result = engine.evaluate(facts.to_engine(), facts.unknown)
    except EngineError as exc:
        raise EngineUnavailable("the rule engine could not answer safely; no cards") from exc
    cards = build_cards(result, facts, service.ruleset, base_url, patient_id=request.context.patientId, now=now)
    return Evaluation(
        decision_id=new_id(),
        service=service,
        request=request,
        now=now,
        facts=facts,
        result=result,
        cards=cards,
        duration_ms=(time.perf_counter() - started) * 1000,
        fetched_keys=tuple(sorted(data.fetched_keys)),
    )


async def answer(
    request: CDSRequest,
    service: Service,
    engine: RuleEngine,
    gather: Callable[[], Awaitable[PrefetchData]],
    *,
    now: datetime,
    base_url: str,
) -> Evaluation:
    """One invocation: its data (`gather`: prefetch, then the EHR's FHIR server), then `evaluate`.
    Every invocation is evaluated from its own data: nothing is kept between requests."""
    data = await gather()
    return evaluate(request, service, engine, data, now=now, base_url=base_url)
