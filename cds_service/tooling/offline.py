"""The pipeline without HTTP: a Bundle or a CDS Hooks request in, an Evaluation out.

Used by the CLI (`evaluate`, `request`, `examples`), the developers' test page and the
example tests, so that all of them build requests the same way an EHR would and run the
very pipeline the HTTP route runs. It never fetches from a FHIR server: what is not in the
file is not there.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cds_service import pipeline
from cds_service.decision import Evaluation
from cds_service.errors import BadRequest, PrefetchFailed
from cds_service.hooks import HOOKS, CDSRequest
from cds_service.pipeline import FhirSource
from cds_service.pipeline.fhir_access import OPERATOR, FhirServerPolicy
from cds_service.pipeline.fhir_client import FhirServer
from cds_service.pipeline.prefetch import EhrSource
from cds_service.pipeline.services import Service, service_for_profile
from cds_service.runtime import Runtime
from fhir_mappings.datafiles import read_yaml
from fhir_mappings.prefetch_keys import key_by_type, prefetch_templates

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE_USER = "Practitioner/example"

BUNDLE_TYPES = ("collection", "transaction", "searchset", "batch", "document")


class InputError(ValueError):
    """The input is not a FHIR Bundle or CDS Hooks request the pipeline can read (CLI exit code 2)."""


def load_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such file") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not readable JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise InputError(f"{path}: expected a JSON object")
    return document


def parse_now(value: str | None) -> datetime | None:
    """`--now`: an ISO 8601 date or date-time; a date or a naive time is read as UTC."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputError(f"--now must be an ISO 8601 date or date-time, not {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def check_hook(hook: str) -> str:
    if hook not in HOOKS:
        raise InputError(f"unknown hook {hook!r}: use one of {', '.join(HOOKS)}")
    return hook


# --- FHIR Bundle -> CDS Hooks request ---------------------------------------------------------


def _bundle_entries(bundle: dict[str, Any]) -> list[tuple[str | None, dict[str, Any]]]:
    """(fullUrl, resource) pairs of a collection, transaction or searchset Bundle.

    A transaction entry without a resource id gets the id of its `urn:uuid:` fullUrl, so
    that references by fullUrl and by `Type/id` both still point at it.
    """
    if bundle.get("type") not in BUNDLE_TYPES:
        raise InputError(f"Bundle.type {bundle.get('type')!r} is not one of {', '.join(BUNDLE_TYPES)}")
    pairs: list[tuple[str | None, dict[str, Any]]] = []
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise InputError("Bundle.entry must be a list")
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
            continue
        full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
        resource = dict(entry["resource"])
        if not resource.get("id") and full_url and full_url.startswith("urn:uuid:"):
            resource["id"] = full_url.removeprefix("urn:uuid:")
        if resource.get("resourceType") == "Bundle":
            pairs.extend(_bundle_entries(resource))
        else:
            pairs.append((full_url, resource))
    local = {url: f"{r.get('resourceType')}/{r.get('id')}" for url, r in pairs if url and r.get("id")}
    return [(url, _rewrite_references(r, local)) for url, r in pairs]


def _rewrite_references(value: Any, local: dict[str, str]) -> Any:
    """A copy with references to a Bundle entry's fullUrl turned into `Type/id`, as a FHIR server
    does when it stores a transaction (so the prefetch holds what a later search would return)."""
    if isinstance(value, dict):
        out = {k: _rewrite_references(v, local) for k, v in value.items()}
        reference = out.get("reference")
        if isinstance(reference, str) and reference in local:
            out["reference"] = local[reference]
        return out
    if isinstance(value, list):
        return [_rewrite_references(v, local) for v in value]
    return value


def read_drafts(document: dict[str, Any] | list[Any]) -> list[dict[str, Any]]:
    """Draft orders from a file: one resource, a Bundle of them, or a JSON list."""
    if isinstance(document, list):
        drafts = [d for d in document if isinstance(d, dict)]
    elif document.get("resourceType") == "Bundle":
        drafts = [r for _, r in _bundle_entries(document)]
    else:
        drafts = [document]
    for draft in drafts:
        if not isinstance(draft.get("resourceType"), str) or not draft.get("id"):
            raise InputError("a draft order needs a resourceType and an id (selections refer to Type/id)")
    return drafts


def _search_bundle() -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "total": 0, "entry": []}


def request_from_bundle(
    bundle: dict[str, Any],
    hook: str,
    patient_id: str | None = None,
    draft_orders: list[dict[str, Any]] | None = None,
    *,
    hook_instance: str | None = None,
    user_id: str = EXAMPLE_USER,
) -> dict[str, Any]:
    """The CDS Hooks request an EHR would send for this chart, prefetch keyed like the discovery templates.

    Draft orders (given, or the `draft` MedicationRequests of the Bundle) go to
    `context.draftOrders`, not to prefetch: an EHR's search does not return unsigned orders.
    """
    check_hook(hook)
    pairs = _bundle_entries(bundle)
    patients = [r for _, r in pairs if r.get("resourceType") == "Patient"]
    if patient_id is None:
        if len(patients) != 1:
            raise InputError(f"the bundle holds {len(patients)} Patient resources, not one: give --patient")
        patient_id = str(patients[0].get("id"))
    bundle_drafts = [r for _, r in pairs if r.get("resourceType") == "MedicationRequest" and r.get("status") == "draft"]
    drafts = [dict(d) for d in (draft_orders if draft_orders is not None else bundle_drafts)]
    if hook != "patient-view" and not drafts:
        raise InputError(f"{hook} needs draft orders: give --draft FILE or put a draft MedicationRequest in the bundle")
    for draft in drafts:
        draft.setdefault("subject", {"reference": f"Patient/{patient_id}"})

    templates = prefetch_templates()
    prefetch_value: dict[str, Any] = {key: (None if key == "patient" else _search_bundle()) for key in templates}
    draft_ids = {id(d) for d in bundle_drafts}
    for full_url, resource in pairs:
        if id(resource) in draft_ids:
            continue
        key = key_by_type().get(str(resource.get("resourceType")))
        if key is None or key not in templates:
            continue
        if key == "patient":
            if resource.get("id") == patient_id:
                prefetch_value["patient"] = resource
            continue
        entry: dict[str, Any] = {"resource": resource, "search": {"mode": "match"}}
        if full_url:
            entry = {"fullUrl": full_url, **entry}
        prefetch_value[key]["entry"].append(entry)
    for value in prefetch_value.values():
        if isinstance(value, dict) and value.get("type") == "searchset":
            value["total"] = len(value["entry"])

    request: dict[str, Any] = {
        "hook": hook,
        "hookInstance": hook_instance or str(uuid.uuid4()),
        "context": {"userId": user_id, "patientId": patient_id},
        "prefetch": prefetch_value,
    }
    if hook != "patient-view":
        request["context"]["draftOrders"] = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": d} for d in drafts],
        }
        if hook == "order-select":
            request["context"]["selections"] = [f"{d.get('resourceType')}/{d.get('id')}" for d in drafts]
    return request


def as_request(
    document: dict[str, Any],
    hook: str | None = None,
    patient_id: str | None = None,
    draft_orders: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A CDS Hooks request from either a request document (used as is) or a FHIR Bundle."""
    if "hook" in document and "context" in document:
        return document
    if document.get("resourceType") == "Bundle":
        return request_from_bundle(document, hook or "patient-view", patient_id, draft_orders)
    if isinstance(document.get("resourceType"), str):
        raise InputError(f"a {document['resourceType']} is not a Bundle: wrap the chart's resources in a Bundle")
    raise InputError("expected a CDS Hooks request (hook, context) or a FHIR Bundle")


# --- evaluation -----------------------------------------------------------------------------------


def service_for(runtime: Runtime, hook: str, profile: str | None = None) -> Service:
    """The service that answers `hook` in `profile` (a profile name or a service id); without one,
    the default profile's. The offline tools reach every profile the rules define, whether or
    not this deployment's discovery lists it (CDS_PROFILES)."""
    if profile is None:
        listed = sorted((s for s in runtime.services.values() if s.hook == hook), key=lambda s: (not s.ruleset.default, s.id))
        if listed:
            return listed[0]
        profile = next(name for name, rs in runtime.rulesets.items() if rs.default)
    for ruleset in runtime.rulesets.values():
        service = service_for_profile(ruleset, hook)
        if profile in (ruleset.profile, service.id):
            return service
    raise InputError(f"no service for hook {hook!r} in profile {profile!r} (profiles: {', '.join(sorted(runtime.rulesets))})")


def validate_request(raw: dict[str, Any]) -> CDSRequest:
    try:
        return CDSRequest.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'request'}: {e['msg']}" for e in exc.errors())
        raise InputError(f"not a valid CDS Hooks request: {problems}") from exc


async def answer_request(
    runtime: Runtime,
    raw: dict[str, Any],
    *,
    profile: str | None = None,
    now: datetime | None = None,
    source: FhirSource | None = None,
    fhir_servers: FhirServerPolicy = OPERATOR,
    base_url: str = "",
) -> Evaluation:
    """`pipeline.answer` on a CDS Hooks request, as the HTTP route runs it, for the CLI and the test page.

    Prefetch keys that are absent are fetched from `fhirServer` as the service does (`source`:
    the runtime's own by default), from any server for the operator's own tools (`fhir_servers`;
    the test page passes the HTTP caller's); where the service would answer 400 or 412 this
    raises InputError with the same reasons.
    """
    request = validate_request(raw)
    service = service_for(runtime, request.hook, profile)
    try:
        return await pipeline.answer(
            request,
            service,
            runtime.engines[service.profile],
            source or runtime.source,
            now=now or runtime.clock(),
            base_url=base_url,
            fhir_servers=fhir_servers,
        )
    except BadRequest as exc:
        raise InputError(f"the service rejected the request: {exc.detail}") from exc
    except PrefetchFailed as exc:
        raise InputError(f"the service would answer 412: {exc.detail}") from exc


def evaluate_request(runtime: Runtime, raw: dict[str, Any], *, profile: str | None = None, now: datetime | None = None) -> Evaluation:
    """`answer_request` for callers without an event loop (CLI commands, rule tests, the catalog).

    It runs on a loop of its own with a FHIR client of its own, closed before it returns: an
    httpx client belongs to the loop that made it, and the service's pooled one is left alone.
    """
    fhir = FhirServer(runtime.settings)

    async def run() -> Evaluation:
        try:
            return await answer_request(runtime, raw, profile=profile, now=now, source=EhrSource(fhir))
        finally:
            await fhir.aclose()

    return asyncio.run(run())


def evaluate_document(
    runtime: Runtime,
    document: dict[str, Any],
    *,
    hook: str | None = None,
    patient_id: str | None = None,
    profile: str | None = None,
    now: datetime | None = None,
    draft_orders: list[dict[str, Any]] | None = None,
) -> Evaluation:
    """A Bundle or a request, evaluated as of `now` (default: the runtime's clock)."""
    raw = as_request(document, hook, patient_id, draft_orders)
    return evaluate_request(runtime, raw, profile=profile, now=now or runtime.clock())


def response_body(evaluation: Evaluation) -> dict[str, Any]:
    """The CDS Hooks response the HTTP route would send for this evaluation."""
    return {
        "cards": evaluation.cards,
        "extension": {"decision-id": evaluation.decision_id, "ruleset-version": evaluation.service.ruleset.version},
    }


# --- the sample patients of examples/ -----------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One entry of examples/manifest.yaml: a sample chart and what it should produce."""

    name: str
    file: Path
    title: str
    hook: str
    now: datetime
    expected: dict[str, tuple[str, ...]]
    drafts: tuple[Path, ...] = ()
    indicators: dict[str, str] = field(default_factory=dict)
    request_name: str | None = None
    patient_id: str | None = None

    def expected_for(self, profile: str) -> tuple[str, ...]:
        """Expected outcome codes in a profile: its own entry, else the article's."""
        return self.expected.get(profile, self.expected["article"])

    def bundle(self) -> dict[str, Any]:
        return load_json(self.file)

    def draft_orders(self) -> list[dict[str, Any]] | None:
        if not self.drafts:
            return None
        return [draft for path in self.drafts for draft in read_drafts(load_json(path))]

    def cds_request(self, hook_instance: str | None = None) -> dict[str, Any]:
        """The request an EHR would send for this example (a stable hookInstance when none is given)."""
        instance = hook_instance or str(uuid.uuid5(uuid.NAMESPACE_URL, f"rls-iron-example:{self.name}"))
        return request_from_bundle(self.bundle(), self.hook, self.patient_id, self.draft_orders(), hook_instance=instance)

    def cds_request_on(self, today: date) -> dict[str, Any]:
        """The request with every date moved by the days from the example's `now` to `today`:
        evaluated on `today`, the chart is as old as it is on `now`, so it gives the same cards."""
        return shift_dates(self.cds_request(str(uuid.uuid4())), (today - self.now.date()).days)


FHIR_DAY = re.compile(r"^(\d{4}-\d{2}-\d{2})(T.*)?$")


def shift_dates(value: Any, days: int) -> Any:
    """`value` with every FHIR date and dateTime that names a day moved by `days` (a year or a
    month alone is left as it is). A copy: the input is not changed."""
    if isinstance(value, dict):
        return {key: shift_dates(item, days) for key, item in value.items()}
    if isinstance(value, list):
        return [shift_dates(item, days) for item in value]
    if isinstance(value, str) and days and (match := FHIR_DAY.match(value)):
        try:
            day = date.fromisoformat(match.group(1))
        except ValueError:
            return value
        return (day + timedelta(days=days)).isoformat() + (match.group(2) or "")
    return value


def find_example_or_request(name: str, root: Path = EXAMPLES_DIR) -> Example:
    """An example by its name or by the name of its ready request."""
    for example in load_examples(root):
        if name in (example.name, example.request_name):
            return example
    known = sorted(e.request_name for e in load_examples(root) if e.request_name)
    raise InputError(f"no example or request named {name!r} (requests: {', '.join(known)})")


def _example(entry: dict[str, Any], root: Path) -> Example:
    name = entry.get("name") or Path(entry["file"]).stem
    expected = {profile: tuple(codes or ()) for profile, codes in entry["expected"].items()}
    if "article" not in expected:
        raise ValueError(f"examples/manifest.yaml: {name} has no expected outcomes for the article profile")
    now = parse_now(str(entry["now"]))
    assert now is not None
    return Example(
        name=name,
        file=root / "bundles" / entry["file"],
        title=entry["title"],
        hook=check_hook(entry.get("hook", "patient-view")),
        now=now,
        expected=expected,
        drafts=tuple(root / "drafts" / d for d in entry.get("drafts", ())),
        indicators=dict(entry.get("indicators") or {}),
        request_name=entry.get("request"),
        patient_id=entry.get("patient"),
    )


@lru_cache(maxsize=4)
def load_examples(root: Path = EXAMPLES_DIR) -> tuple[Example, ...]:
    """Every example of the manifest, in its order."""
    manifest = read_yaml(root / "manifest.yaml")
    return tuple(_example(entry, root) for entry in manifest["examples"])


def find_example(name: str, root: Path = EXAMPLES_DIR) -> Example:
    for example in load_examples(root):
        if example.name == name or example.file.name == name:
            return example
    raise InputError(f"no example {name!r}: see `cds-service examples list`")
