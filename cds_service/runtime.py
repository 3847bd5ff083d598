"""What one process builds at start-up and shares across requests: rules, engines, services."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from cds_service.audit.writer import DecisionLog
from cds_service.decision import DecisionSink
from cds_service.engine import RuleEngine, build_engines, choose_engine
from cds_service.engine.ruleset import RULES_DIR, RuleSet, load_all_rulesets
from cds_service.pipeline import FhirSource
from cds_service.pipeline.card_texts import load_card_texts
from cds_service.pipeline.fhir_client import FhirServer
from cds_service.pipeline.prefetch import EhrSource
from cds_service.pipeline.services import Service, build_services
from cds_service.settings import Settings

log = logging.getLogger("cds_service")


@dataclass
class Runtime:
    settings: Settings
    rulesets: dict[str, RuleSet]
    engines: dict[str, RuleEngine]
    services: dict[str, Service]
    engine_name: str
    decision_log: DecisionSink
    fhir: FhirServer
    """The pooled client for the EHR's FHIR servers (closed at shutdown)."""
    source: FhirSource
    """Where each request's resources come from: prefetch, then `fhir` for absent keys."""
    engine_note: str | None = None
    catalog: Any = None
    """The rule catalog, built on first use by the /rules/catalog route (a pure function of the rule files)."""
    offload: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="cds-large-requests"))
    """The one thread large requests are checked and evaluated on, off the event loop. One, not
    several: CPU-bound Python threads only contend for the interpreter lock, and queued large
    requests then slow everything down."""
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc))
    """"Now" for every evaluation: the request time. Tests and demos replace it."""

    @property
    def ruleset_version(self) -> str:
        return next(iter(self.rulesets.values())).version

    def public_base(self, request: Any) -> str:
        """Base URL for links in cards: CDS_PUBLIC_URL when set, else the URL the request came to."""
        if self.settings.public_url:
            return self.settings.public_url.rstrip("/")
        return str(request.base_url).rstrip("/")

    def close(self) -> None:
        for engine in self.engines.values():
            engine.close()


def build_runtime(settings: Settings) -> Runtime:
    """Load and check every rule file, compile the engines, and list the services. Raises on any problem."""
    rulesets = load_all_rulesets(settings.rules_dir or RULES_DIR)
    engine_name, note = choose_engine(settings.rule_engine)
    if note:
        log.warning(note)
    load_card_texts()  # a broken rules/cards.yaml stops start-up, like a broken rule file
    engines = build_engines(rulesets, engine_name)
    services = build_services(rulesets, settings.enabled_services, settings.profile_names)
    log.info("rules loaded", extra={"engine": engine_name, "profiles": sorted(rulesets), "services": len(services)})
    fhir = FhirServer(settings)
    return Runtime(settings, rulesets, engines, services, engine_name, DecisionLog(settings), fhir, EhrSource(fhir), note)
