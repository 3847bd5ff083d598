"""What every mapper shares for one request: identity, the day, parameters, and the trace it writes."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Callable, Iterable, Mapping

from fhir_mappings.errors import MappingInputError
from fhir_mappings.facts import Exclusion, Unreadable

log = logging.getLogger("fhir_mappings")


def rid(resource: dict[str, Any]) -> str:
    """The resource id for a trace line (ids are not patient values; junk becomes '?')."""
    value = resource.get("id")
    return value if isinstance(value, str) and 0 < len(value) <= 64 else "?"


def rtype(resource: dict[str, Any]) -> str:
    value = resource.get("resourceType")
    return value if isinstance(value, str) and len(value) <= 64 else "?"


def ref(resource: dict[str, Any]) -> str:
    return f"{rtype(resource)}/{rid(resource)}"


@dataclass
class Trace:
    """Exclusions, unreadable resources, notes and sources, in the order they were found (sorted when frozen)."""

    exclusions: list[Exclusion] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sources: dict[str, list[str]] = field(default_factory=dict)

    def exclude(self, resource: dict[str, Any], reason: str, fact: str = "") -> None:
        self.exclusions.append(Exclusion(rtype(resource), rid(resource), reason, fact))

    def unclassified(self, resource: dict[str, Any], element: str | None) -> None:
        """A resource whose code could not be read, so nothing tells what it records."""
        if element:
            self.exclude(resource, f"unreadable: {element} (what it records cannot be told)")

    def unknown(self, resource: dict[str, Any], *, fact_type: str, label: str, element: str, fields: tuple[str, ...]) -> None:
        """An unreadable resource of a value set: left out, and what it would have told is unknown."""
        self.exclude(resource, f"unreadable: {element}", fact_type)
        self.unreadable.append(Unreadable(rtype(resource), rid(resource), label, element, fields))

    def unreadable_unless(self, ruled_out: str | None, resource: dict[str, Any], *, fact_type: str, label: str, element: str, fields: tuple[str, ...]) -> None:
        """An unreadable resource of a value set: simply left out when a readable element already
        rules it out (`ruled_out` says which), else `unknown`."""
        if ruled_out:
            self.exclude(resource, f"{ruled_out} ({element} unreadable)", fact_type)
        else:
            self.unknown(resource, fact_type=fact_type, label=label, element=element, fields=fields)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def source(self, fact: str, reference: str) -> None:
        refs = self.sources.setdefault(fact, [])
        if reference not in refs:
            refs.append(reference)


@dataclass
class Context:
    """One request's mapping state."""

    patient_id: str
    today: date
    params: Mapping[str, Any]
    full_urls: Mapping[str, str]
    trace: Trace = field(default_factory=Trace)

    def param(self, name: str, default: Any) -> Any:
        value = self.params.get(name)
        return default if value is None else value

    def days_ago(self, day: date) -> int:
        return (self.today - day).days


def guarded(ctx: Context, resources: Iterable[Any], read: Callable[[dict[str, Any]], None], fact: str = "") -> None:
    """Run `read` on each resource; a resource that breaks the mapper is excluded, never a 500.

    Logged with its type, id and the exception class only (no values).
    """
    for resource in resources:
        if not isinstance(resource, dict):
            continue
        try:
            read(resource)
        except MappingInputError:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad resource must not fail the request
            log.warning("mapping skipped %s: %s", ref(resource), type(exc).__name__)
            ctx.trace.exclude(resource, f"unreadable ({type(exc).__name__})", fact)


ByType = Mapping[str, list[dict[str, Any]]]
"""A request's resources grouped by `resourceType`, each group in request order."""


def by_type(resources: Iterable[Any]) -> ByType:
    """The one pass over a request's resources: each mapper then reads the types it maps."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for resource in resources:
        if isinstance(resource, dict):
            kind = resource.get("resourceType")
            if isinstance(kind, str):
                groups.setdefault(kind, []).append(resource)
    return groups


def of_type(resources: ByType, *types: str) -> list[dict[str, Any]]:
    """The resources of these types (no answer depends on their order)."""
    if len(types) == 1:
        return resources.get(types[0], [])
    return [resource for kind in types for resource in resources.get(kind, ())]
