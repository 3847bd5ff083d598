"""Prefetch: find the FHIR resources of one request, wherever the EHR put them.

Resources are recognised by `resourceType`: a Bundle under any key (its entries are read), or a
single resource. A key present with `null` means no data. A key holding an OperationOutcome
means the data is unknown. A key that is absent counts as no data in this foundation version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from typing import TYPE_CHECKING

from cds_service.models import CDSRequest

if TYPE_CHECKING:
    from cds_service.runtime import Runtime


@dataclass
class PrefetchData:
    """The resources of one request, flattened, with the keys whose data is unknown."""

    resources: list[dict[str, Any]] = field(default_factory=list)
    unknown_keys: set[str] = field(default_factory=set)
    missing_keys: set[str] = field(default_factory=set)
    full_urls: dict[str, str] = field(default_factory=dict)
    """Bundle entry fullUrl -> "Type/id", to resolve `urn:uuid:` and absolute references."""


def resources_in(value: Any, full_urls: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The resources a prefetch value holds: a Bundle's entries (recursively), or the resource itself.

    When `full_urls` is given, each entry's fullUrl is recorded there as "Type/id".
    """
    if not isinstance(value, dict):
        return []
    if value.get("resourceType") == "Bundle":
        found: list[dict[str, Any]] = []
        entries = value.get("entry")
        for entry in entries if isinstance(entries, list) else []:
            if not (isinstance(entry, dict) and isinstance(entry.get("resource"), dict)):
                continue
            resource = entry["resource"]
            if resource.get("resourceType") == "Bundle":
                found.extend(resources_in(resource, full_urls))
                continue
            full_url = entry.get("fullUrl")
            if full_urls is not None and isinstance(full_url, str) and isinstance(resource.get("id"), str):
                full_urls[full_url] = f"{resource.get('resourceType')}/{resource['id']}"
            found.append(resource)
        return found
    if isinstance(value.get("resourceType"), str):
        return [value]
    return []


def collect(request: CDSRequest, templates: dict[str, str]) -> PrefetchData:
    """Resources from `prefetch`, without any fetch."""
    data = PrefetchData()
    prefetch = request.prefetch or {}
    for key in templates:
        if key not in prefetch:
            data.missing_keys.add(key)
    for key, value in prefetch.items():
        if value is None:
            continue
        if isinstance(value, dict) and value.get("resourceType") == "OperationOutcome":
            data.unknown_keys.add(key)
            continue
        data.resources.extend(resources_in(value, data.full_urls))
    return data


async def gather(request: CDSRequest, runtime: "Runtime") -> PrefetchData:
    """All the data of one request: prefetch, then (later) the FHIR server for missing keys."""
    from cds_service.services import prefetch_templates

    return collect(request, prefetch_templates())


def draft_orders(request: CDSRequest) -> list[dict[str, Any]]:
    """The draft orders the hook is about: all of draftOrders, or for order-select only the selected ones."""
    bundle = request.context.draftOrders
    if not bundle:
        return []
    orders = resources_in(bundle)
    if request.hook == "order-select":
        selected = set(request.context.selections or [])
        orders = [o for o in orders if f"{o.get('resourceType')}/{o.get('id')}" in selected]
    return orders
