"""Prefetch: find the FHIR resources of one request, wherever the EHR put them, and fetch the rest.

Resources are recognised by `resourceType`: a Bundle under any key (its entries are read), or a
single resource. A key present with `null` means no data. A key holding an OperationOutcome
means the data is unknown. A key of the service's templates that is absent is fetched from
`fhirServer` (all keys concurrently, within CDS_FHIR_TOTAL_TIMEOUT); when it cannot be obtained
the request fails with 412 (`PrefetchFailed`) rather than being answered on partial data.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping
from urllib.parse import quote

import httpx

from cds_service.errors import PrefetchFailed
from cds_service.hooks import CDSRequest
from cds_service.observability import metrics
from cds_service.pipeline.fhir_access import NOWHERE, FhirServerPolicy
from cds_service.pipeline.fhir_client import EntryBudget, FetchError, FhirClient, FhirServer, Origin, base_url
from fhir_mappings.prefetch_keys import PATIENT_TOKEN, prefetch_templates

log = logging.getLogger("cds_service.pipeline.prefetch")

FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
READ = re.compile(r"([A-Z][A-Za-z]+)/" + re.escape(PATIENT_TOKEN))


@dataclass
class PrefetchData:
    """The resources of one request, flattened, with the keys whose data is unknown."""

    resources: list[dict[str, Any]] = field(default_factory=list)
    unknown_keys: set[str] = field(default_factory=set)
    missing_keys: set[str] = field(default_factory=set)
    full_urls: dict[str, str] = field(default_factory=dict)
    """Bundle entry fullUrl -> "Type/id", to resolve `urn:uuid:` and absolute references."""
    fetched_keys: set[str] = field(default_factory=set)
    """Keys that were absent from `prefetch` and were fetched from `fhirServer`."""


@dataclass(frozen=True)
class Failure:
    """Why one prefetch key could not be obtained: the body of a 412, a metrics label, a log line."""

    key: str
    reason: str
    message: str

    def detail(self) -> dict[str, str]:
        return {"key": self.key, "reason": self.reason, "message": self.message}


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


def absent_keys(prefetch: Mapping[str, Any] | None, templates: Iterable[str]) -> set[str]:
    """Keys of the templates that `prefetch` does not hold (a key present with null is held):
    the keys `gather` fetches."""
    return {key for key in templates if prefetch is None or key not in prefetch}


def needs_fetch(request: CDSRequest) -> bool:
    """Whether `gather` would fetch anything for this request from `fhirServer`."""
    return bool(absent_keys(request.prefetch, prefetch_templates()))


def collect_values(prefetch: Mapping[str, Any], templates: Mapping[str, str]) -> PrefetchData:
    """Resources from a prefetch mapping (key -> resource, Bundle, OperationOutcome or null)."""
    data = PrefetchData()
    data.missing_keys = absent_keys(prefetch, templates)
    for key, value in prefetch.items():
        if value is None:
            continue
        if isinstance(value, dict) and value.get("resourceType") == "OperationOutcome":
            data.unknown_keys.add(key)
            continue
        data.resources.extend(resources_in(value, data.full_urls))
    return data


def collect(request: CDSRequest, templates: Mapping[str, str]) -> PrefetchData:
    """Resources from `prefetch`, without any fetch (absent keys are listed in `missing_keys`)."""
    return collect_values(request.prefetch or {}, templates)


@dataclass(frozen=True)
class EhrSource:
    """The service's `FhirSource`: the request's prefetch, then the EHR's FHIR server for absent keys."""

    fhir: FhirServer

    async def gather(self, request: CDSRequest, allowed: FhirServerPolicy) -> PrefetchData:
        return await gather(request, self.fhir, allowed)


async def gather(request: CDSRequest, fhir: FhirServer, allowed: FhirServerPolicy = NOWHERE) -> PrefetchData:
    """All the data of one request: `prefetch`, then `fhirServer` for the keys that are absent.

    Every key of the templates is needed (the rules read all of them), so a key that can be
    neither found nor fetched raises PrefetchFailed (412) naming the key and the reason.
    """
    templates = prefetch_templates()
    data = collect(request, templates)
    if not data.missing_keys:
        return data
    missing = sorted(data.missing_keys)
    if not request.fhirServer:
        raise _failed([Failure(k, "no-fhir-server", "absent from prefetch and no fhirServer to fetch it from") for k in missing], host=None)
    fetched = await fetch_keys(request, fhir, {k: templates[k] for k in missing}, allowed)
    merged = dict(request.prefetch or {})
    merged.update(fetched)
    result = collect_values(merged, templates)
    result.fetched_keys = set(fetched)
    return result


async def fetch_keys(request: CDSRequest, fhir: FhirServer, queries: Mapping[str, str], allowed: FhirServerPolicy) -> dict[str, Any]:
    """Fetch each key's query from `fhirServer`, concurrently, within the total time budget; only
    from a server `allowed` allows."""
    settings = fhir.settings
    try:
        base = base_url(request.fhirServer or "")
    except FetchError as exc:
        raise _failed([Failure(k, exc.reason, exc.message) for k in queries], host=None) from None
    if not allowed.allows(str(base)):
        # Nothing is sent anywhere: not a connection, not the EHR's token (fhir_access.py).
        message = f"absent from prefetch, and fhirServer is not a FHIR server this caller may use (see {allowed.setting})"
        raise _failed([Failure(k, "fhir-server-not-allowed", message) for k in queries], host=None)
    origin = Origin.of(base)
    token = request.fhirAuthorization.access_token if request.fhirAuthorization else None
    client = fhir.client()
    budget = EntryBudget(settings.max_bundle_entries)
    patient_id = request.context.patientId
    tasks = {
        key: asyncio.create_task(_fetch_one(client, base, origin, token, query, patient_id, budget), name=f"prefetch-{key}")
        for key, query in queries.items()
    }
    try:
        done, _ = await asyncio.wait(tasks.values(), timeout=settings.fhir_total_timeout)
    finally:  # also when this request itself is cancelled (the EHR hung up)
        for task in tasks.values():
            if not task.done():
                # Not awaited: a task inside a DNS lookup (a worker thread) only ends when the
                # lookup does, and the budget must hold regardless. Its outcome is dropped.
                task.add_done_callback(_discard)
                task.cancel()

    fetched: dict[str, Any] = {}
    failures: list[Failure] = []
    for key, task in tasks.items():
        if task not in done:
            failures.append(Failure(key, "timeout", f"not obtained within {settings.fhir_total_timeout:g} s"))
            continue
        exc = task.exception()
        if isinstance(exc, FetchError):
            failures.append(Failure(key, exc.reason, exc.message))
        elif exc is not None:
            log.error("unexpected prefetch error", extra={"key": key, "host": origin.host, "error": type(exc).__name__})
            failures.append(Failure(key, "error", "unexpected error while fetching"))
        else:
            fetched[key] = task.result()
    if failures:
        raise _failed(failures, host=origin.host)
    log.info("prefetch keys fetched", extra={"keys": sorted(fetched), "host": origin.host})
    return fetched


async def _fetch_one(
    client: FhirClient, base: httpx.URL, origin: Origin, token: str | None, query: str, patient_id: str, budget: EntryBudget
) -> dict[str, Any]:
    """One key: a read (`Type/{{context.patientId}}`) or a search with all its pages."""
    read = READ.fullmatch(query)
    if read:
        if not FHIR_ID.fullmatch(patient_id) or set(patient_id) == {"."}:
            raise FetchError("invalid-patient-id", "context.patientId is not a FHIR id: cannot read the resource")
        resource = await client.read(_url(base, query, patient_id), origin, token)
        if resource.get("resourceType") != read.group(1) or resource.get("id") != patient_id:
            raise FetchError("unexpected-resource", f"the read did not return {read.group(1)}/{{context.patientId}}")
        return resource
    return await client.search(_url(base, query, patient_id), origin, token, budget)


def _discard(task: "asyncio.Task[Any]") -> None:
    if not task.cancelled():
        task.exception()


def _url(base: httpx.URL, query: str, patient_id: str) -> httpx.URL:
    """The template's query on `base`, with the patient id URL-encoded."""
    path = query.replace(PATIENT_TOKEN, quote(patient_id, safe=""))
    if "{{" in path:
        raise FetchError("unresolvable-template", "the prefetch template has a token this service cannot fill")
    return httpx.URL(f"{base}/{path}")


def _failed(failures: list[Failure], host: str | None) -> PrefetchFailed:
    """Count, log (key, reason, host only) and build the 412 for these failures."""
    for failure in failures:
        metrics.FHIR_FETCH_FAILURES.labels(failure.key, failure.reason).inc()
        log.warning("prefetch key not obtained", extra={"key": failure.key, "reason": failure.reason, "host": host})
    keys = ", ".join(f.key for f in failures)
    first = failures[0]
    sentence = f"prefetch {'key' if len(failures) == 1 else 'keys'} {keys} could not be obtained: {first.message}"
    if len({f.reason for f in failures}) > 1:
        sentence += " (each key's reason is under failures)"
    return PrefetchFailed(sentence, {"failures": [f.detail() for f in failures]})


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
