"""The developers' test page and its JSON endpoint, over HTTP (the browser test drives the same page)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cds_service.app import create_app
from cds_service.tooling import fixtures as fx
from tests.conftest import make_settings


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("ui"), mode="development", auth_mode=None)
    with TestClient(create_app(settings)) as client:
        yield client


def codes(body: dict) -> list[str]:
    return sorted(c["source"]["topic"]["code"] for c in body["response"]["cards"])


def test_page_lists_examples_hooks_and_profiles(dev):
    response = dev.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert 'value="failed-oral-trial"' in html and 'value="order-sign"' in html and 'value="article"' in html
    assert '<script src="/static/app.js">' in html
    assert dev.get("/static/app.js").status_code == 200
    assert "renderMarkdown" in dev.get("/static/app.js").text


def test_page_and_endpoint_are_off_in_production(tmp_path: Path):
    with TestClient(create_app(make_settings(tmp_path))) as client:
        assert client.get("/").status_code == 404
        assert client.post("/ui/evaluate", json={"example": "rls-low-ferritin"}).status_code == 404


def test_ui_enabled_setting_turns_it_on_in_production(tmp_path: Path):
    with TestClient(create_app(make_settings(tmp_path, ui_enabled=True))) as client:
        assert client.get("/").status_code == 200
        assert client.post("/ui/evaluate", json={"example": "rls-low-ferritin"}).status_code == 200


def test_ui_routes_are_hidden_from_openapi(dev):
    paths = dev.get("/openapi.json").json()["paths"]
    assert "/" not in paths and "/ui/evaluate" not in paths


def test_evaluate_an_example_returns_request_response_and_trace(dev):
    response = dev.post("/ui/evaluate", json={"example": "failed-oral-trial", "hook": "patient-view", "service": "article"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert codes(body) == ["escalate-iv-iron"]
    assert body["service"] == "rls-iron-patient-view"
    assert body["now"].startswith("2026-11-26")  # the example's own date, not the wall clock
    assert body["request"]["context"]["patientId"] == "ex-failed-oral-trial"
    assert [f["outcome"] for f in body["trace"]["fired"]] and body["trace"]["silent"]
    assert body["facts"]["oral_iron"]["days"] == 100 and body["facts"]["ferritin"]["value_ug_per_l"] == 35


def test_evaluate_an_order_hook_example_uses_its_draft(dev):
    response = dev.post("/ui/evaluate", json={"example": "order-sign-iron-without-ferritin", "hook": "order-sign"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["request"]["context"]["draftOrders"]["entry"][0]["resource"]["status"] == "draft"
    assert codes(body) == ["order-iron-studies"]


def test_evaluate_a_pasted_bundle_as_of_a_date(dev):
    bundle = fx.bundle([fx.patient(), fx.condition("rls"), fx.ferritin(140, days_ago=20)], kind="collection")
    response = dev.post("/ui/evaluate", json={"bundle": bundle, "hook": "patient-view", "now": "2026-11-26"})
    assert response.status_code == 200, response.text
    assert codes(response.json()) == ["iron-stores-adequate"]


def test_bad_input_is_a_400_with_a_readable_message(dev):
    cases = [
        {"bundle": {"resourceType": "Observation"}},
        {"example": "no-such-example"},
        {},
        {"example": "rls-low-ferritin", "hook": "order-sign"},
        {"example": "rls-low-ferritin", "now": "soon"},
    ]
    for body in cases:
        response = dev.post("/ui/evaluate", json=body)
        assert response.status_code == 400, body
        assert isinstance(response.json()["detail"], str)


def test_feedback_on_a_card_from_the_page_reaches_the_real_endpoint(dev):
    body = dev.post("/ui/evaluate", json={"example": "rls-low-ferritin"}).json()
    card = body["response"]["cards"][0]
    feedback = {"feedback": [{"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-26T09:05:00Z"}]}
    response = dev.post(f"/cds-services/{body['service']}/feedback", json=feedback)
    assert response.status_code == 200 and response.json() == {"received": 1}


def test_example_titles_are_escaped_in_the_page(dev, monkeypatch):
    from cds_service.http import ui
    from cds_service.tooling.offline import Example, load_examples

    evil = Example(name="x", file=Path("x.json"), title="<script>alert(1)</script>", hook="patient-view", now=fx.DEFAULT_NOW, expected={"article": ()})
    monkeypatch.setattr(ui, "load_examples", lambda: (*load_examples(), evil))
    html = dev.get("/").text
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


def test_evaluate_a_pasted_cds_hooks_request(dev):
    request = fx.cds_request([fx.condition("rls"), fx.ferritin(30, days_ago=10)])
    response = dev.post("/ui/evaluate", json={"bundle": request, "hook": "patient-view", "now": "2026-11-26"})
    assert response.status_code == 200, response.text
    assert response.json()["request"]["hookInstance"] == request["hookInstance"]  # used as is
    assert codes(response.json()) == ["start-oral-iron"]


def test_the_timeline_draws_what_the_rules_read_through_bundle_full_urls(dev):
    """A ferritin whose subject is the Patient's `urn:uuid:` fullUrl is the patient's for the rules,
    and so for the timeline."""
    patient = fx.patient()
    labs, urls = fx.full_url_bundle([patient])
    patient_url = next(iter(urls))
    labs["entry"].append({"fullUrl": "urn:uuid:fer-1", "resource": fx.ferritin(30, days_ago=10, subject={"reference": patient_url})})
    request = fx.cds_request([fx.condition("rls")])
    request["prefetch"]["labs"] = labs
    response = dev.post("/ui/evaluate", json={"bundle": request, "hook": "patient-view", "now": fx.DEFAULT_NOW.date().isoformat()})
    assert response.status_code == 200, response.text
    assert codes(response.json()) == ["start-oral-iron"]
    assert response.json()["timeline"].count('class="point ferritin"') == 1
