"""A decision record for every invocation, linked to the response, its cards and its feedback.

Through the HTTP API with realistic FHIR, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
import uuid

from cds_service.audit.pseudonym import patient_key
from cds_service.errors import PrefetchFailed
from cds_service.hooks import Feedback
from cds_service.tooling import fixtures as fx
from tests.conftest import outcomes
from tests.test_audit_support import SERVICE, all_text, db_url, decision_log, feedback_body, rows, running, wait_until  # noqa: F401

LOW_FERRITIN = [fx.condition("rls"), fx.ferritin(31.7, days_ago=20)]


def test_a_decision_with_cards_is_recorded_with_its_id_rules_facts_and_cards(tmp_path, db_url):
    excluded = fx.ferritin(20, status="entered-in-error")
    with running(tmp_path, db_url) as client:
        response = client.post(SERVICE, json=(request := fx.cds_request([*LOW_FERRITIN, excluded])))
    assert outcomes(response) == ["start-oral-iron"]
    decision_id = response.json()["extension"]["decision-id"]
    [record] = [r for r in rows(db_url, "decisions") if r["id"] == decision_id]
    assert record["status"] == 200
    assert record["hook"] == "patient-view" and record["hook_instance"] == request["hookInstance"]
    assert record["service_id"] == "rls-iron-patient-view"
    assert record["ruleset_version"] == response.json()["extension"]["ruleset-version"]
    assert record["patient_key"] == patient_key("development-only-patient-key", fx.DEFAULT_PATIENT)
    assert record["engine"] in ("durable", "python") and record["profile"] == "article"
    assert record["duration_ms"] >= 0

    [card] = response.json()["cards"]
    [stored_card] = rows(db_url, "decision_cards")
    assert (stored_card["card_uuid"], stored_card["outcome"], stored_card["decision_id"]) == (card["uuid"], "start-oral-iron", decision_id)

    fired = {r["rule_id"]: r for r in rows(db_url, "decision_rules")}
    assert "start-oral-iron" in fired
    ferritin = fired["start-oral-iron"]["facts"]["ferritin"]
    observation_id = LOW_FERRITIN[1]["id"]
    assert ferritin["sources"] == [f"Observation/{observation_id}"]
    assert "<= 50 (ferritin_low)" in ferritin["values"]["value_ug_per_l"]
    assert ferritin["values"]["current"] is True
    assert ferritin["values"]["date"] == fx.day(20)

    detail = record["detail"]
    assert {"resource": f"Observation/{excluded['id']}", "reason": "entered-in-error"} in detail["excluded"]
    silent = {s["rule"]: s["why"] for s in detail["silent"]}
    assert silent["iron-stores-adequate"] == "ferritin.value_ug_per_l > ferritin_low"


def test_a_decision_without_cards_is_recorded(tmp_path, db_url):
    with running(tmp_path, db_url) as client:
        response = client.post(SERVICE, json=fx.cds_request([fx.ferritin(120)]))
    assert outcomes(response) == []
    [record] = rows(db_url, "decisions")
    assert record["id"] == response.json()["extension"]["decision-id"]
    assert record["status"] == 200
    assert rows(db_url, "decision_cards") == [] and rows(db_url, "decision_rules") == []
    assert record["detail"]["silent"], "the silent rules say why nothing fired"


def test_a_412_is_recorded_without_cards(tmp_path, db_url, monkeypatch):
    async def unavailable(request, fhir, allowed):
        raise PrefetchFailed("labs could not be fetched")

    monkeypatch.setattr("cds_service.pipeline.prefetch.gather", unavailable)
    with running(tmp_path, db_url) as client:
        response = client.post(SERVICE, json=(request := fx.cds_request(LOW_FERRITIN)))
    assert response.status_code == 412
    [record] = rows(db_url, "decisions")
    assert (record["status"], record["error"], record["hook_instance"]) == (412, "prefetch-failed", request["hookInstance"])
    assert record["ruleset_version"] and record["patient_key"]
    assert record["detail"]["error_detail"] is None, "an error's detail may quote the request: PHI mode only"


def test_missing_prefetch_without_fhir_server_is_recorded_whatever_the_answer(tmp_path, db_url):
    request = fx.cds_request(LOW_FERRITIN)
    request["prefetch"] = {"patient": request["prefetch"]["patient"]}  # labs, conditions... absent
    with running(tmp_path, db_url) as client:
        response = client.post(SERVICE, json=request)
    assert response.status_code in (200, 412)
    [record] = rows(db_url, "decisions")
    assert record["status"] == response.status_code
    if response.status_code == 200:
        assert record["id"] == response.json()["extension"]["decision-id"]


def test_an_engine_failure_503_is_recorded(tmp_path, db_url, monkeypatch):
    from cds_service.engine import EngineError

    with running(tmp_path, db_url) as client:
        engine = client.app.state.runtime.engines["article"]

        def broken(*args, **kwargs):
            raise EngineError("boom")

        monkeypatch.setattr(engine, "evaluate", broken)
        response = client.post(SERVICE, json=fx.cds_request(LOW_FERRITIN))
    assert response.status_code == 503
    [record] = rows(db_url, "decisions")
    assert (record["status"], record["error"]) == (503, "engine-unavailable")


def test_a_request_for_the_wrong_hook_is_not_a_decision(tmp_path):
    """400 before any data is read (wrong hook, invalid body): nothing was decided, nothing recorded."""
    url = f"sqlite:///{tmp_path / 'db' / 'decisions.db'}"
    with running(tmp_path, url) as client:
        response = client.post(SERVICE, json=fx.cds_request(LOW_FERRITIN, hook="order-sign"))
    assert response.status_code == 400
    assert rows(url, "decisions") == []


def test_every_invocation_gets_its_own_record(tmp_path, db_url):
    with running(tmp_path, db_url) as client:
        ids = [client.post(SERVICE, json=fx.cds_request(LOW_FERRITIN)).json()["extension"]["decision-id"] for _ in range(5)]
    assert len(set(ids)) == 5
    assert sorted(r["id"] for r in rows(db_url, "decisions")) == sorted(ids)


def test_minted_ids_are_time_ordered_uuid7(tmp_path, db_url):
    """Decision ids and card and suggestion uuids are UUIDv7 (cds_service.ids): unique, and each
    answer's sort after the previous answer's, so the log's indexes on them grow at one end."""
    chart = [fx.condition("rls"), fx.ferritin(31.7, days_ago=20), fx.medication_request("sertraline")]
    with running(tmp_path, db_url) as client:
        answers = [client.post(SERVICE, json=fx.cds_request(chart)).json() for _ in range(5)]
    decision_ids = [a["extension"]["decision-id"] for a in answers]
    card_uuids = [c["uuid"] for a in answers for c in a["cards"]]
    suggestion_uuids = [s["uuid"] for a in answers for c in a["cards"] for s in c.get("suggestions") or []]
    minted = decision_ids + card_uuids + suggestion_uuids
    assert len(card_uuids) == 10 and suggestion_uuids
    assert len(set(minted)) == len(minted)
    assert {uuid.UUID(x).version for x in minted} == {7}
    assert decision_ids == sorted(decision_ids)
    assert [a["cards"][0]["uuid"] for a in answers] == sorted(a["cards"][0]["uuid"] for a in answers)
    assert sorted(r["card_uuid"] for r in rows(db_url, "decision_cards")) == sorted(card_uuids)


def test_feedback_is_linked_to_the_decision_that_returned_the_card(tmp_path, db_url):
    with running(tmp_path, db_url) as client:
        response = client.post(SERVICE, json=fx.cds_request(LOW_FERRITIN))
        card = response.json()["cards"][0]
        override = {"reason": {"code": "patient-declined", "system": "http://example.org/override", "display": "Patient declined"}, "userComment": "prefers to wait"}
        answer = client.post(f"{SERVICE}/feedback", json=feedback_body(card["uuid"], "overridden", overrideReason=override))
        assert answer.status_code == 200
    [item] = rows(db_url, "feedback")
    assert item["linked"] is True or item["linked"] == 1
    assert item["decision_id"] == response.json()["extension"]["decision-id"]
    assert (item["card_outcome"], item["outcome"], item["override_code"]) == ("start-oral-iron", "overridden", "patient-declined")
    assert item["user_comment"] is None, "free text may name the patient: PHI mode only"


def test_feedback_on_an_unknown_card_is_stored_and_flagged_not_rejected(tmp_path, db_url):
    with running(tmp_path, db_url) as client:
        answer = client.post(f"{SERVICE}/feedback", json=feedback_body("no-such-card", "accepted", acceptedSuggestions=[{"id": "s1"}]))
        assert answer.status_code == 200
    [item] = rows(db_url, "feedback")
    assert item["card_uuid"] == "no-such-card"
    assert not item["linked"] and item["decision_id"] is None
    assert item["accepted_suggestions"] == ["s1"]


def test_feedback_written_before_its_decision_is_linked_when_the_decision_arrives(tmp_path, db_url):
    """Two worker processes: the feedback may reach the database before the decision it is about."""
    with running(tmp_path, db_url) as client:
        response = client.post(SERVICE, json=fx.cds_request(LOW_FERRITIN))
        card = response.json()["cards"][0]["uuid"]
    from cds_service.audit import Store

    store = Store(db_url)
    [record] = store.get(response.json()["extension"]["decision-id"])
    early = {"kind": "feedback", "id": "fb-early", "received_at": "2026-11-26T09:00:00+00:00", "service_id": "rls-iron-patient-view",
             "card_uuid": "card-later", "outcome": "accepted", "accepted_suggestions": []}
    late = {**{k: record[k] for k in ("service_id", "hook", "hook_instance", "patient_key", "ruleset_version", "status", "duration_ms", "detail")},
            "kind": "decision", "id": "decision-later", "created_at": "2026-11-26T09:00:01+00:00", "fired": [],
            "cards": [{"uuid": "card-later", "outcome": "start-oral-iron", "indicator": "warning"}]}
    store.write([early])
    store.write([late])
    store.dispose()
    item = next(r for r in rows(db_url, "feedback") if r["id"] == "fb-early")
    assert item["linked"] and item["decision_id"] == "decision-later" and item["card_outcome"] == "start-oral-iron"
    assert card != "card-later"


def test_with_phi_off_no_patient_values_ids_or_names_are_stored(tmp_path, db_url):
    pid = "pat-zq9-4471"
    resources = [
        fx.patient(pid, name=("Quillonia", "Marrowfield")),
        fx.condition("rls", patient_id=pid),
        fx.ferritin(31.7, days_ago=20, patient_id=pid),
        fx.hemoglobin(11.3, days_ago=20, patient_id=pid),
        fx.ferritin(23.9, days_ago=25, patient_id="pat-other-8812"),
    ]
    with running(tmp_path, db_url) as client:
        response = client.post(SERVICE, json=fx.cds_request(resources, patient_id=pid))
        card = response.json()["cards"][0]["uuid"]
        comment = {"userComment": "Quillonia Marrowfield declined", "reason": {"code": "patient-declined"}}
        client.post(f"{SERVICE}/feedback", json=feedback_body(card, "overridden", overrideReason=comment))
    dump = all_text(db_url)
    for secret in (pid, "pat-other-8812", "Quillonia", "Marrowfield", "31.7", "11.3", "23.9", "ng/mL", "g/dL"):
        assert secret not in dump, secret
    assert "<= 50 (ferritin_low)" in dump, "the rule-relevant band is stored instead"
    assert "Patient/[other-patient]" in dump, "another patient's resource is excluded, with its patient redacted"


def test_with_phi_on_values_are_stored(tmp_path, db_url):
    pid = "pat-zq9-4471"
    resources = [fx.patient(pid), fx.condition("rls", patient_id=pid), fx.ferritin(31.7, days_ago=20, patient_id=pid)]
    with running(tmp_path, db_url, decision_log_phi=True) as client:
        response = client.post(SERVICE, json=fx.cds_request(resources, patient_id=pid))
        card = response.json()["cards"][0]["uuid"]
        client.post(f"{SERVICE}/feedback", json=feedback_body(card, "overridden", overrideReason={"userComment": "prefers to wait"}))
    [record] = rows(db_url, "decisions")
    assert record["patient_id"] == pid
    assert record["phi"]["facts"]["ferritin"]["value_ug_per_l"] == 31.7
    assert record["phi"]["timeline"]["points"]["ferritin"] == [[fx.day(20), 31.7]], "the chart over time, for decisions show --timeline"
    fired = {r["rule_id"]: r for r in rows(db_url, "decision_rules")}
    assert fired["start-oral-iron"]["facts"]["ferritin"]["values"]["value_ug_per_l"] == 31.7
    assert rows(db_url, "feedback")[0]["user_comment"] == "prefers to wait"


def test_records_are_written_while_serving_whether_sent_from_the_loop_or_another_thread(tmp_path, db_url):
    """The writer is woken only when its queue was empty (on the event loop), always from another
    thread: no record may wait for the stop's flush to be written."""
    with running(tmp_path, db_url) as client:
        for ferritin in range(20, 60):  # a burst: most arrive while the writer has records queued
            assert client.post(SERVICE, json=fx.cds_request([fx.condition("rls"), fx.ferritin(ferritin)])).status_code == 200
        assert wait_until(lambda: len(rows(db_url, "decisions")) == 40), "decisions left waiting in the queue"
        log = decision_log(client)
        sent = [str(uuid.uuid4()) for _ in range(5)]

        def from_another_thread() -> None:
            for card in sent:
                log.record_feedback("rls-iron-patient-view", Feedback.model_validate(feedback_body(card)))

        worker = threading.Thread(target=from_another_thread)
        worker.start()
        worker.join()
        assert wait_until(lambda: {r["card_uuid"] for r in rows(db_url, "feedback")} >= set(sent)), "feedback left waiting"
