"""The pipeline without HTTP: a Bundle or a CDS Hooks request in, an Evaluation out (CLI, tests)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cds_service import pipeline, prefetch
from cds_service.models import CDSRequest
from cds_service.runtime import Runtime
from cds_service.services import prefetch_templates

PREFETCH_KEY_BY_TYPE = {
    "Patient": "patient",
    "Observation": "labs",
    "Condition": "conditions",
    "MedicationRequest": "medications",
    "MedicationStatement": "medicationStatements",
    "MedicationAdministration": "medicationAdministrations",
    "AllergyIntolerance": "allergies",
}


class InputError(ValueError):
    """The file is not a FHIR Bundle or CDS Hooks request the pipeline can read (CLI exit code 2)."""


def load_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not readable JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise InputError(f"{path}: expected a JSON object")
    return document


def request_from_bundle(bundle: dict[str, Any], hook: str, patient_id: str | None, draft_orders: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The CDS Hooks request an EHR would send for this Bundle: prefetch filled by resource type."""
    resources = prefetch.resources_in(bundle)
    patients = [r for r in resources if r.get("resourceType") == "Patient"]
    if patient_id is None:
        if len(patients) != 1:
            raise InputError("the bundle does not hold exactly one Patient: give --patient")
        patient_id = str(patients[0].get("id"))
    prefetch_value: dict[str, Any] = {key: None for key in prefetch_templates()}
    for key in prefetch_templates():
        if key == "patient":
            continue
        prefetch_value[key] = {"resourceType": "Bundle", "type": "searchset", "entry": []}
    for resource in resources:
        key = PREFETCH_KEY_BY_TYPE.get(resource.get("resourceType", ""))
        if key == "patient":
            prefetch_value["patient"] = resource
        elif key:
            prefetch_value[key]["entry"].append({"resource": resource})
    drafts = list(draft_orders or [])
    if hook != "patient-view" and not drafts:
        drafts = [r for r in resources if r.get("resourceType") == "MedicationRequest" and r.get("status") == "draft"]
    request: dict[str, Any] = {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": {"patientId": patient_id, "userId": "Practitioner/example"},
        "prefetch": prefetch_value,
    }
    if hook != "patient-view":
        request["context"]["draftOrders"] = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": d} for d in drafts]}
        if hook == "order-select":
            request["context"]["selections"] = [f"{d.get('resourceType')}/{d.get('id')}" for d in drafts]
    return request


def as_request(document: dict[str, Any], hook: str | None, patient_id: str | None) -> dict[str, Any]:
    """A CDS Hooks request from either a request document or a FHIR Bundle."""
    if "hook" in document and "context" in document:
        return document
    if document.get("resourceType") == "Bundle":
        return request_from_bundle(document, hook or "patient-view", patient_id)
    raise InputError("expected a CDS Hooks request (hook, context) or a FHIR Bundle")


def evaluate_document(runtime: Runtime, document: dict[str, Any], *, hook: str | None = None, patient_id: str | None = None, profile: str | None = None, now: datetime | None = None) -> pipeline.Evaluation:
    """Run the whole pipeline in-process, exactly as the HTTP route does (no FHIR fetch)."""
    raw = as_request(document, hook, patient_id)
    try:
        request = CDSRequest.model_validate(raw)
    except ValidationError as exc:
        raise InputError("not a valid CDS Hooks request: " + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from exc
    candidates = [s for s in runtime.services.values() if s.hook == request.hook and (profile is None or s.profile == profile)]
    if not candidates:
        raise InputError(f"no service for hook {request.hook!r}" + (f" in profile {profile!r}" if profile else ""))
    service = sorted(candidates, key=lambda s: (s.profile != "article", s.id))[0]
    data = prefetch.collect(request, prefetch_templates())
    return pipeline.evaluate(request, service, runtime.engines[service.profile], data, now=now)
