"""Reuse of a decision for an identical invocation (cds_service.reuse), through the HTTP API.

An identical chart sent again the same day gets the same cards with new uuids, a new decision
id and a decision record that says the evaluation was reused; anything that could change the
answer (patient, day, one resource, resource order, draft orders, any other context field, the
rules' engine) is a new evaluation, and so is every invocation that needs data fetched from the
FHIR server. Turned off with CDS_REUSE_CACHE_SIZE=0.
"""

from __future__ import annotations

import copy
from datetime import timedelta

from cds_service import fixtures as fx
from cds_service import prefetch
from cds_service.reuse import Decided, ReuseCache
from tests.conftest import outcomes
from tests.fhir_server import FhirTestServer
from tests.test_audit_support import SERVICE, rows, running

CHART = [fx.patient(), fx.condition("rls"), fx.ferritin(31.7, days_ago=20), fx.hemoglobin(13.1, days_ago=20)]


def _strip_uuids(card: dict) -> dict:
    card = copy.deepcopy(card)
    card.pop("uuid")
    for suggestion in card.get("suggestions", []):
        suggestion.pop("uuid")
    return card


def _reused(db_url: str) -> dict[str, bool]:
    return {r["id"]: r["detail"]["reused"] for r in rows(db_url, "decisions")}


def test_an_identical_invocation_reuses_the_decision_with_new_ids(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'd.db'}"
    with running(tmp_path, db_url) as client:
        first = client.post(SERVICE, json=fx.cds_request(CHART))
        second = client.post(SERVICE, json=fx.cds_request(CHART))  # a new hookInstance, same chart
    assert outcomes(first) == outcomes(second) == ["start-oral-iron"]
    a, b = first.json(), second.json()
    assert a["extension"]["decision-id"] != b["extension"]["decision-id"]
    [card_a], [card_b] = a["cards"], b["cards"]
    assert card_a["uuid"] != card_b["uuid"]
    assert {s["uuid"] for s in card_a["suggestions"]}.isdisjoint(s["uuid"] for s in card_b["suggestions"])
    assert _strip_uuids(card_a) == _strip_uuids(card_b)
    reused = _reused(db_url)
    assert reused == {a["extension"]["decision-id"]: False, b["extension"]["decision-id"]: True}
    # Both decisions are recorded in full, each with its own cards.
    stored = {(r["decision_id"], r["card_uuid"]) for r in rows(db_url, "decision_cards")}
    assert stored == {(a["extension"]["decision-id"], card_a["uuid"]), (b["extension"]["decision-id"], card_b["uuid"])}
    by_decision = {r["id"]: r["detail"] for r in rows(db_url, "decisions")}
    first_detail, second_detail = (by_decision[x["extension"]["decision-id"]] for x in (a, b))
    assert {k: v for k, v in first_detail.items() if k != "reused"} == {k: v for k, v in second_detail.items() if k != "reused"}


def test_anything_that_can_change_the_answer_is_evaluated_again(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'd.db'}"
    other_patient = "pat-other-77"
    with running(tmp_path, db_url) as client:
        runtime = client.app.state.runtime
        assert outcomes(client.post(SERVICE, json=fx.cds_request(CHART))) == ["start-oral-iron"]
        # The same resources for another context patient: they are that patient's no longer.
        assert outcomes(client.post(SERVICE, json=fx.cds_request(CHART, patient_id=other_patient))) == []
        # One more resource: an IV iron allergy changes nothing here, but it is another chart.
        client.post(SERVICE, json=fx.cds_request([*CHART, fx.allergy("iron-sucrose")]))
        # The same resources in another order.
        client.post(SERVICE, json=fx.cds_request(list(reversed(CHART))))
        # An oral iron order being signed.
        client.post(SERVICE.replace("patient-view", "order-sign"), json=fx.cds_request(CHART, hook="order-sign", drafts=[fx.draft_order("ferrous-sulfate")]))
        # The next day: ages and windows are counted in days.
        runtime.clock = lambda: fx.DEFAULT_NOW + timedelta(days=1)
        assert outcomes(client.post(SERVICE, json=fx.cds_request(CHART))) == ["start-oral-iron"]
        assert runtime.reuse.hits == 0
    assert set(_reused(db_url).values()) == {False}


def test_only_the_hook_instance_and_the_access_token_may_differ(tmp_path, monkeypatch):
    """They change on every call of the same chart; any other field is another invocation, and a
    reused one does not even read its prefetch."""
    gathered = []
    real_gather = prefetch.gather

    async def counting_gather(request, runtime):
        gathered.append(request.hookInstance)
        return await real_gather(request, runtime)

    monkeypatch.setattr(prefetch, "gather", counting_gather)
    db_url = f"sqlite:///{tmp_path / 'd.db'}"
    token = {"access_token": "t-1", "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read", "subject": "rls-iron"}
    with running(tmp_path, db_url) as client:
        runtime = client.app.state.runtime
        client.post(SERVICE, json=fx.cds_request(CHART, fhirAuthorization=token))
        client.post(SERVICE, json=fx.cds_request(CHART, fhirAuthorization={**token, "access_token": "t-2"}))
        assert (runtime.reuse.hits, len(gathered)) == (1, 1)
        other_user = fx.cds_request(CHART)
        other_user["context"]["userId"] = "Practitioner/another"
        with_extension = fx.cds_request(CHART, extension={"com.example.ehr": {"site": "b"}})
        other_server = fx.cds_request(CHART, fhir_server="https://other-ehr.example.org/fhir")
        for request in (other_user, with_extension, other_server):
            assert outcomes(client.post(SERVICE, json=request)) == ["start-oral-iron"]
        assert (runtime.reuse.hits, len(gathered)) == (1, 4)


def test_an_invocation_that_needs_a_fetch_is_never_reused(tmp_path):
    """The FHIR server's data can change between two calls: a key absent from the prefetch is
    fetched again every time, and what it returns is evaluated again."""
    db_url = f"sqlite:///{tmp_path / 'd.db'}"
    with FhirTestServer([fx.patient(), fx.condition("rls"), fx.ferritin(31.7, days_ago=20)]) as fhir, running(tmp_path, db_url) as client:
        request = fx.cds_request([], fhir_server=fhir.url)
        request["prefetch"].pop("labs")
        request["prefetch"].pop("conditions")
        assert outcomes(client.post(SERVICE, json=request)) == ["start-oral-iron"]
        fhir.resources[2] = fx.ferritin(120, days_ago=10, oid=fhir.resources[2]["id"])
        assert outcomes(client.post(SERVICE, json=request)) == ["iron-stores-adequate"]
        assert len(fhir.requests_for("Observation")) == 2
        assert client.app.state.runtime.reuse.hits == 0
    assert set(_reused(db_url).values()) == {False}


def test_a_chart_that_differs_in_one_value_is_not_reused(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'd.db'}"
    high = [fx.patient(), fx.condition("rls"), fx.ferritin(120, days_ago=20), fx.hemoglobin(13.1, days_ago=20)]
    for resource, low in zip(high, CHART):
        resource["id"] = low["id"]  # same ids, one value differs
    with running(tmp_path, db_url) as client:
        assert outcomes(client.post(SERVICE, json=fx.cds_request(CHART))) == ["start-oral-iron"]
        assert outcomes(client.post(SERVICE, json=fx.cds_request(high))) == ["iron-stores-adequate"]


def test_reuse_can_be_turned_off(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'd.db'}"
    with running(tmp_path, db_url, reuse_cache_size=0) as client:
        for _ in range(3):
            assert outcomes(client.post(SERVICE, json=fx.cds_request(CHART))) == ["start-oral-iron"]
        assert len(client.app.state.runtime.reuse) == 0
    assert set(_reused(db_url).values()) == {False}


def test_the_cache_is_bounded_least_recently_used_out():
    cache = ReuseCache(2)
    entries = {key: Decided(facts=None, result=None, cards=()) for key in (b"a", b"b", b"c")}  # type: ignore[arg-type]
    cache.put(b"a", entries[b"a"])
    cache.put(b"b", entries[b"b"])
    assert cache.get(b"a") is entries[b"a"]  # a is now the most recently used
    cache.put(b"c", entries[b"c"])
    assert len(cache) == 2
    assert cache.get(b"b") is None
    assert cache.get(b"a") is entries[b"a"] and cache.get(b"c") is entries[b"c"]
    assert cache.get(b"") is None  # the key of an input that cannot be encoded never matches


def test_card_links_follow_the_host_each_request_came_to(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'd.db'}"
    with running(tmp_path, db_url) as client:
        bases = []
        for host in ("ehr-a.example.org", "ehr-b.example.org", "ehr-a.example.org"):
            response = client.post(SERVICE, json=fx.cds_request(CHART), headers={"host": host})
            [card] = response.json()["cards"]
            bases.append(card["links"][0]["url"].split("/rules/")[0])
        assert bases == ["http://ehr-a.example.org", "http://ehr-b.example.org", "http://ehr-a.example.org"]
        for n in range(100):  # the Host header is the client's: remembered bases stay bounded
            client.post(SERVICE, json=fx.cds_request(CHART), headers={"host": f"h{n}.example.org"})
        assert len(client.app.state.runtime._bases) <= 64
