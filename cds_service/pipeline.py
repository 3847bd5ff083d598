"""The one-way pipeline: request -> resources -> facts -> rules -> outcomes -> cards."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Iterable

from cds_service.cards import build_cards, with_new_uuids
from cds_service.engine import EngineError, EngineResult, RuleEngine
from cds_service.errors import BadRequest, EngineUnavailable
from cds_service.ids import new_id
from cds_service.models import Card, CDSRequest
from cds_service.prefetch import PrefetchData, draft_orders, needs_fetch
from cds_service.reuse import Decided, ReuseCache, reuse_key
from cds_service.services import Service
from fhir_mappings import FactSet, MappingInput, build_facts
from fhir_mappings.build import utc_today
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
    extra: dict[str, Any] = field(default_factory=dict)
    views: dict[str, Any] = field(default_factory=dict)
    """Forms of the decision derived from facts, rule answer and cards alone (e.g. the decision
    record's content), computed once and shared by every reuse of the same decision. Whatever
    is stored here must not depend on per-invocation values (ids, uuids, times) and is never
    mutated after it is stored."""

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
            "fetched": list(self.extra.get("fetched_keys", ())),
            "reused": bool(self.extra.get("reused")),
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
    """Run the pipeline on data already gathered (the offline CLI and the test page).
    Synchronous: the engine runs on the caller's thread."""
    started = time.perf_counter()
    now = now or datetime.now(timezone.utc)
    decided = _decide(request, service, engine, data, draft_orders(request), now, base_url)
    return _evaluation(request, service, decided, started=started, now=now, fetched=data.fetched_keys)


async def answer(
    request: CDSRequest,
    service: Service,
    engine: RuleEngine,
    gather: Callable[[], Awaitable[PrefetchData]],
    *,
    now: datetime,
    base_url: str,
    cache: ReuseCache,
) -> Evaluation:
    """One invocation: its data (`gather`), then facts, rules and cards, unless an identical
    invocation was decided already (see cds_service.reuse) and its decision can be reused.

    Only an invocation with every prefetch key present is looked up: its inputs are then all in
    the request. One that needs a fetch from the FHIR server is always evaluated.
    """
    key = b""
    if cache.enabled and not needs_fetch(request):
        key = reuse_key(
            request, service_id=service.id, ruleset_version=service.ruleset.version, engine=engine.name, day=utc_today(now), base_url=base_url
        )
    decided = cache.get(key) if key else None
    if decided is not None:
        return _evaluation(request, service, decided, started=time.perf_counter(), now=now, fetched=(), reused=True)
    data = await gather()
    started = time.perf_counter()  # the pipeline's own time, as for `evaluate`: fetching is not in it
    decided = _decide(request, service, engine, data, draft_orders(request), now, base_url)
    if key:
        cache.put(key, decided)
    return _evaluation(request, service, decided, started=started, now=now, fetched=data.fetched_keys)


def _evaluation(
    request: CDSRequest,
    service: Service,
    decided: Decided,
    *,
    started: float,
    now: datetime,
    fetched: Iterable[str],
    reused: bool = False,
) -> Evaluation:
    """The Evaluation of one invocation. The cards built for it carry uuids of their own; a
    reuse gets copies with new ones (a uuid names one card shown once)."""
    return Evaluation(
        decision_id=new_id(),
        service=service,
        request=request,
        now=now,
        facts=decided.facts,
        result=decided.result,
        cards=with_new_uuids(decided.cards) if reused else list(decided.cards),
        duration_ms=(time.perf_counter() - started) * 1000,
        extra={"fetched_keys": sorted(fetched), "reused": reused},
        views=decided.views,
    )


def _decide(
    request: CDSRequest, service: Service, engine: RuleEngine, data: PrefetchData, drafts: list[dict[str, Any]], now: datetime, base_url: str
) -> Decided:
    """Facts, rule answer and cards of one invocation: everything that depends on its inputs alone."""
    mapping_input = MappingInput(
        resources=data.resources,
        patient_id=request.context.patientId,
        now=now,
        params=service.ruleset.parameters,
        hook=request.hook,
        draft_orders=drafts,
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
    return Decided(facts=facts, result=result, cards=tuple(cards))
