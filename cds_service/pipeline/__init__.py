"""The one-way pipeline: request -> resources -> facts -> rules -> outcomes -> cards.

`answer` is the one entry point: the HTTP route, the CLI and the test page all call it, each
with the `FhirSource` it wants (the EHR's prefetch and FHIR server, or a test's own).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor
from datetime import datetime
from typing import Protocol

from cds_service.decision import Evaluation
from cds_service.engine import EngineError, RuleEngine
from cds_service.errors import BadRequest, EngineUnavailable
from cds_service.hooks import CDSRequest
from cds_service.ids import new_id
from cds_service.pipeline.cards import build_cards
from cds_service.pipeline.fhir_access import NOWHERE, FhirServerPolicy
from cds_service.pipeline.prefetch import PrefetchData, draft_orders
from cds_service.pipeline.services import Service
from fhir_mappings import MappingInput, build_facts
from fhir_mappings.errors import MappingInputError


class FhirSource(Protocol):
    """Where one request's FHIR resources come from (as httpx's transports: the caller picks one).

    The service's source reads `prefetch` and fetches absent keys from the EHR's `fhirServer`
    (`prefetch.EhrSource`); tests pass their own.
    """

    async def gather(self, request: CDSRequest, allowed: FhirServerPolicy) -> PrefetchData:
        """The request's resources; a fetch goes only to a server `allowed` allows."""
        ...


async def answer(
    request: CDSRequest,
    service: Service,
    engine: RuleEngine,
    source: FhirSource,
    *,
    now: datetime,
    base_url: str = "",
    fhir_servers: FhirServerPolicy = NOWHERE,
    offload: Executor | None = None,
) -> Evaluation:
    """One invocation: its data from `source`, then facts, rules and cards, as of `now`.

    `fhir_servers` are the FHIR servers this caller may have the service fetch from (none unless
    the caller passes its policy; see fhir_access.py).

    Every invocation is evaluated from its own data: nothing is kept between requests. The
    evaluation runs on the caller's thread, or on `offload` (for a large request: the app's one
    evaluation thread), so that the event loop goes on serving other requests meanwhile.
    """
    data = await source.gather(request, fhir_servers)
    if offload is not None:
        return await asyncio.get_running_loop().run_in_executor(offload, decide, request, service, engine, data, now, base_url)
    return decide(request, service, engine, data, now, base_url)


def mapping_input(request: CDSRequest, service: Service, data: PrefetchData, now: datetime) -> MappingInput:
    """What the mapping layer reads of one invocation: its resources, the context patient and hook,
    the draft orders, the profile's parameters and the keys whose data is unknown."""
    return MappingInput(
        resources=data.resources,
        patient_id=request.context.patientId,
        now=now,
        params=service.ruleset.parameters,
        hook=request.hook,
        draft_orders=draft_orders(request),
        unknown_keys=frozenset(data.unknown_keys),
        full_urls=data.full_urls,
    )


def decide(request: CDSRequest, service: Service, engine: RuleEngine, data: PrefetchData, now: datetime, base_url: str) -> Evaluation:
    """Facts, rules and cards for data already gathered: CPU only, no I/O."""
    started = time.perf_counter()
    inputs = mapping_input(request, service, data, now)
    try:
        facts = build_facts(inputs)
    except MappingInputError as exc:
        raise BadRequest(str(exc)) from exc
    try:
        result = engine.evaluate(facts.engine_view, facts.unknown)
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
        inputs=inputs,
    )
