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
            title=f"RLS iron work-up and escalation, {HOOK_TITLES[self.hook]} ({self.ruleset.short_name})",
            description=(
                "Iron-deficiency work-up and oral-to-IV iron escalation for restless legs syndrome, "
                f"with the safety rules on iron overload, children and pregnancy. Profile: {self.profile}."
            ),
            prefetch=dict(prefetch_templates()),
            extension={"profile": self.profile, "ruleset-version": self.ruleset.version},
        )


def service_for_profile(ruleset: RuleSet, hook: str) -> Service:
    return Service(id=f"{ruleset.service_prefix}-{hook}", hook=hook, profile=ruleset.profile, ruleset=ruleset)


def build_services(rulesets: Mapping[str, RuleSet], enabled: set[str] | None = None, profiles: list[str] | None = None) -> dict[str, Service]:
    """Service id -> Service: one per hook for each of `profiles` (all when None), or exactly the
    `enabled` service ids when given (CDS_SERVICES, which then alone decides)."""
    if profiles is not None and not enabled:
        unknown_profiles = [p for p in profiles if p not in rulesets]
        if unknown_profiles or not profiles:
            raise ValueError(f"CDS_PROFILES names unknown profiles {unknown_profiles} (known: {', '.join(rulesets)})")
    services: dict[str, Service] = {}
    for profile, ruleset in rulesets.items():
        for hook in HOOKS:
            service = service_for_profile(ruleset, hook)
            if enabled:
                if service.id in enabled:
                    services[service.id] = service
            elif profiles is None or profile in profiles:
                services[service.id] = service
    if enabled:
        unknown = enabled - set(services)
        if unknown:
            raise ValueError(f"CDS_SERVICES names unknown services: {sorted(unknown)}")
    return services
