"""The CDS services this deployment offers: one per (profile, hook), described for discovery."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from cds_service.engine.ruleset import RuleSet
from cds_service.hooks import HOOKS, ServiceDescription
from fhir_mappings.prefetch_keys import prefetch_templates

HOOK_TITLES = {
    "patient-view": "when a chart is opened",
    "order-select": "when an order is selected",
    "order-sign": "when an order is signed",
}


@dataclass(frozen=True)
class Service:
    id: str
    hook: str
    profile: str
    ruleset: RuleSet

    def describe(self) -> ServiceDescription:
        return ServiceDescription(
            id=self.id,
            hook=self.hook,
            title=f"RLS iron work-up and escalation ({self.ruleset.title}), {HOOK_TITLES[self.hook]}",
            description=(
                "Iron-deficiency work-up and oral-to-IV iron escalation for restless legs syndrome, "
                f"with the safety rules on iron overload, children and pregnancy. Profile: {self.profile}."
            ),
            prefetch=dict(prefetch_templates()),
            extension={"profile": self.profile, "ruleset-version": self.ruleset.version},
        )


def build_services(rulesets: Mapping[str, RuleSet], enabled: set[str] | None = None) -> dict[str, Service]:
    """Service id -> Service, for every profile and hook, restricted to `enabled` when given."""
    services: dict[str, Service] = {}
    for profile, ruleset in rulesets.items():
        for hook in HOOKS:
            service_id = f"{ruleset.service_prefix}-{hook}"
            if enabled is None or service_id in enabled:
                services[service_id] = Service(id=service_id, hook=hook, profile=profile, ruleset=ruleset)
    if enabled:
        unknown = enabled - set(services)
        if unknown:
            raise ValueError(f"CDS_SERVICES names unknown services: {sorted(unknown)}")
    return services
