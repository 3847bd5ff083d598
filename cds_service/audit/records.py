"""Decision and feedback records: plain JSON-able dicts built at request time, written later.

A record is built on the request's thread (cheap, no I/O) so the writer never touches live
request objects, and so a record can wait in the queue or a spill file as one JSON line. Every
record carries its own id, which makes writing it twice harmless (retries, spill replay).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from cds_service.audit.banding import rule_fact_values
from cds_service.audit.pseudonym import patient_key, redact_reference, redact_text
from cds_service.audit.tables import DECISION, FEEDBACK
from cds_service.ids import new_id
from fhir_mappings.timeline import chart_timeline

if TYPE_CHECKING:
    from cds_service.decision import Evaluation
    from cds_service.hooks import Feedback
    from cds_service.settings import Settings


def clip(value: Any, length: int) -> str | None:
    """Text cut to its column's size (the writer must never fail on a long string)."""
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= length else text[: length - 1] + "…"


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def decision_record(evaluation: "Evaluation", settings: "Settings", created_at: datetime) -> dict[str, Any]:
    """The record of an answered invocation (cards or none): what fired on which facts, and why not."""
    request = evaluation.request
    patient_id = request.context.patientId
    phi = settings.decision_log_phi
    content = _decision_content(evaluation, settings)
    return {
        "kind": DECISION,
        "id": evaluation.decision_id,
        "created_at": created_at.isoformat(),
        "service_id": evaluation.service.id,
        "hook": request.hook,
        "hook_instance": clip(request.hookInstance, 256),
        "patient_key": content["patient_key"],
        "patient_id": clip(patient_id, 256) if phi else None,
        "ruleset_version": evaluation.service.ruleset.version,
        "profile": evaluation.service.profile,
        "engine": evaluation.result.engine,
        "status": 200,
        "error": None,
        "duration_ms": round(evaluation.duration_ms, 3),
        "detail": {
            "as_of": evaluation.now.isoformat(),
            **content["detail"],
            "error_detail": None,
        },
        "fired": content["fired"],
        "cards": [
            {
                "uuid": card["uuid"],
                "outcome": card["source"]["topic"]["code"],
                "indicator": card["indicator"],
                "summary": card["summary"] if phi else None,
            }
            for card in evaluation.cards
        ],
        "phi": content["phi"],
    }


def _decision_content(evaluation: "Evaluation", settings: "Settings") -> dict[str, Any]:
    """What the decision itself holds: facts, fired rules with their values, the trace."""
    phi = settings.decision_log_phi
    patient_id = evaluation.request.context.patientId
    facts = evaluation.facts.engine_view
    params = evaluation.service.ruleset.parameters
    sources = evaluation.facts.sources
    fired = []
    for item in evaluation.result.fired:
        values = rule_fact_values(item.rule, facts, params, phi=phi)
        fired.append(
            {
                "rule": item.rule.id,
                "outcome": item.rule.outcome,
                "reason": item.rule.reason,
                "facts": {
                    fact: {
                        "sources": [redact_reference(ref, patient_id) for ref in sources.get(fact, ())],
                        "values": values.get(fact, {}),
                    }
                    for fact in item.matched_facts
                },
            }
        )
    content = {
        "patient_key": patient_key(settings.patient_key_secret, patient_id),
        "detail": {
            "silent": [{"rule": s.rule.id, "why": redact_text(s.why, patient_id)} for s in evaluation.result.silent],
            "excluded": [
                {"resource": redact_reference(f"{e.resource_type}/{e.resource_id}", patient_id), "reason": redact_text(e.reason, patient_id)}
                for e in evaluation.facts.exclusions
            ],
            "notes": [redact_text(note, patient_id) for note in evaluation.facts.notes],
            "unknown": list(evaluation.facts.unknown),
            "unreadable": [
                {"resource": redact_reference(u.reference, patient_id), "fact": u.fact, "element": u.element}
                for u in evaluation.facts.unreadable
            ],
            "withheld": list(evaluation.result.withheld),
        },
        "fired": fired,
        "phi": {"facts": facts, "timeline": _timeline(evaluation)} if phi else None,
    }
    return content


def _timeline(evaluation: "Evaluation") -> dict[str, Any]:
    """The chart over time (lab values and dates: PHI mode only), for `decisions show --timeline`."""
    return chart_timeline(evaluation.inputs).to_json()


def failure_record(
    settings: "Settings",
    created_at: datetime,
    *,
    decision_id: str,
    service_id: str,
    ruleset_version: str | None,
    hook: str,
    hook_instance: str,
    patient_id: str,
    status: int,
    error: str,
    detail: Any,
    duration_ms: float,
) -> dict[str, Any]:
    """The record of an invocation answered with an error (412, 400 after parsing, 503): no cards."""
    phi = settings.decision_log_phi
    return {
        "kind": DECISION,
        "id": decision_id,
        "created_at": created_at.isoformat(),
        "service_id": clip(service_id, 128),
        "hook": clip(hook, 64),
        "hook_instance": clip(hook_instance, 256),
        "patient_key": patient_key(settings.patient_key_secret, patient_id),
        "patient_id": clip(patient_id, 256) if phi else None,
        "ruleset_version": ruleset_version,
        "profile": None,
        "engine": None,
        "status": int(status),
        "error": clip(error, 64),
        "duration_ms": round(duration_ms, 3),
        # The detail of an error may quote the request (ids, values): kept only in PHI mode.
        "detail": {"silent": [], "excluded": [], "notes": [], "unknown": [], "error_detail": detail if phi else None},
        "fired": [],
        "cards": [],
        "phi": None,
    }


def feedback_records(service_id: str, feedback: "Feedback", settings: "Settings", received_at: datetime) -> list[dict[str, Any]]:
    """One record per feedback item; the writer links each to the decision that produced its card."""
    phi = settings.decision_log_phi
    records = []
    for item in feedback.feedback:
        reason = item.overrideReason.reason if item.overrideReason else None
        comment = item.overrideReason.userComment if item.overrideReason else None
        records.append(
            {
                "kind": FEEDBACK,
                "id": new_id(),
                "received_at": received_at.isoformat(),
                "service_id": clip(service_id, 128),
                "card_uuid": clip(item.card, 128),
                "outcome": item.outcome,
                "outcome_timestamp": clip(item.outcomeTimestamp, 64),
                "override_code": clip(reason.code, 128) if reason else None,
                "override_system": clip(reason.system, 256) if reason else None,
                "override_display": clip(reason.display, 256) if reason else None,
                "accepted_suggestions": [s.id for s in item.acceptedSuggestions or []],
                # Free text typed by a clinician may name the patient: PHI mode only.
                "user_comment": comment if phi else None,
            }
        )
    return records
