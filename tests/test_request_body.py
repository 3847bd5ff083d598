"""The CDS routes' bodies, as FastAPI reads them: the contract EHRs and the OpenAPI rely on.

JSON is read only under a JSON media type; every way a body can be wrong is a 400
`invalid-request` naming where (`body`, then the field or the byte offset) without echoing a
value; the OpenAPI document still describes both bodies and every schema it references exists.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import pytest
from fastapi.testclient import TestClient

from cds_service.tooling import fixtures as fx
from tests.conftest import outcomes, serve

SERVICE = "/cds-services/rls-iron-patient-view"
FEEDBACK = SERVICE + "/feedback"
PATIENT_NAME = "Zebulon Quimbleworth"


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> Iterator[TestClient]:
    yield from serve(tmp_path_factory.mktemp("body"))


def chart() -> dict[str, Any]:
    return fx.cds_request([fx.condition("rls"), fx.ferritin(32, days_ago=20)])


def post(client: TestClient, path: str, body: bytes, content_type: str | None = "application/json") -> Any:
    headers = {"Content-Type": content_type} if content_type else {}
    return client.post(path, content=body, headers=headers)


def invalid(response: Any, says: str = "") -> list[dict[str, Any]]:
    """The fields at fault of a 400; its `detail` is always one sentence (containing `says`)."""
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "invalid-request"
    assert isinstance(body["detail"], str) and says in body["detail"], body["detail"]
    return body["fields"]


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "application/fhir+json", "Application/JSON"])
def test_json_media_types_are_read(client, content_type):
    assert outcomes(post(client, SERVICE, json.dumps(chart()).encode(), content_type)) == ["start-oral-iron"]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded", "text/json"])
def test_other_media_types_are_refused_without_reading_the_json(client, content_type):
    detail = invalid(post(client, SERVICE, json.dumps(chart()).encode(), content_type), "send it as JSON with Content-Type: application/json")
    assert detail == [{"loc": ["body"], "msg": "Input should be a valid dictionary or object to extract fields from", "type": "model_attributes_type"}]


def test_malformed_json_names_the_byte_where_it_breaks(client):
    raw = json.dumps(chart()).encode()
    detail = invalid(post(client, SERVICE, raw[:-40]), "not valid JSON")
    assert detail[0]["type"] == "json_invalid" and detail[0]["loc"][0] == "body"
    assert 0 < detail[0]["loc"][1] <= len(raw) - 40


def test_the_body_is_parsed_once(client, monkeypatch):
    """The guard parses the body for its limits; the route validates that parse and never
    parses the bytes again. One the guard could not parse still gets the route's own 400."""
    from types import SimpleNamespace

    import starlette.requests

    parsed_by_the_route: list[bytes] = []

    def route_parse(body: bytes, *args: Any, **kwargs: Any) -> Any:
        parsed_by_the_route.append(body)
        return json.loads(body, *args, **kwargs)

    monkeypatch.setattr(starlette.requests, "json", SimpleNamespace(loads=route_parse, JSONDecodeError=json.JSONDecodeError))
    response = post(client, SERVICE, json.dumps(chart()).encode())
    assert response.status_code == 200 and outcomes(response) == ["start-oral-iron"]
    assert parsed_by_the_route == []
    response = post(client, SERVICE, b'{"hook": "patient-view",')
    assert invalid(response, "not valid JSON")[0]["type"] == "json_invalid"
    assert len(parsed_by_the_route) == 1


def test_an_empty_body_is_missing(client):
    assert invalid(post(client, SERVICE, b""), "the body is empty")[0] == {"loc": ["body"], "msg": "Field required", "type": "missing"}


@pytest.mark.parametrize("body", [b"[1]", b"null", b'"text"', b"42"])
def test_a_body_that_is_not_an_object_is_refused(client, body):
    assert [e["loc"] for e in invalid(post(client, SERVICE, body), "one JSON object")] == [["body"]]


def test_field_errors_are_located_and_never_echo_values(client):
    request = chart()
    request["hook"] = 5
    request["context"]["patientId"] = {"name": PATIENT_NAME}
    del request["hookInstance"]
    response = post(client, SERVICE, json.dumps(request).encode())
    locations = {tuple(e["loc"]) for e in invalid(response, "(2 more under fields)")}
    assert locations == {("body", "hook"), ("body", "hookInstance"), ("body", "context", "patientId")}
    assert PATIENT_NAME not in response.text


def test_model_rules_still_apply(client):
    request = fx.cds_request([fx.condition("rls")], hook="order-sign", drafts=[])
    del request["context"]["draftOrders"]
    detail = invalid(post(client, "/cds-services/rls-iron-order-sign", json.dumps(request).encode()))
    assert "draftOrders" in detail[0]["msg"]


def test_feedback_body_is_read_the_same_way(client):
    assert invalid(post(client, FEEDBACK, b"{"))[0]["type"] == "json_invalid"
    assert invalid(post(client, FEEDBACK, b"{}", "text/plain"))[0]["type"] == "model_attributes_type"
    assert [e["loc"] for e in invalid(post(client, FEEDBACK, b'{"feedback": []}'))] == [["body", "feedback"]]
    item = {"card": "c-1", "outcome": "accepted", "outcomeTimestamp": "2026-11-26T10:00:00Z"}
    answer = post(client, FEEDBACK, json.dumps({"feedback": [item]}).encode())
    assert answer.status_code == 200 and answer.json() == {"received": 1}


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_openapi_describes_both_bodies_and_resolves_every_reference(client):
    document = client.get("/openapi.json").json()
    bodies = {
        path: document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        for path in ("/cds-services/{service_id}", "/cds-services/{service_id}/feedback")
    }
    assert bodies == {
        "/cds-services/{service_id}": "#/components/schemas/CDSRequest",
        "/cds-services/{service_id}/feedback": "#/components/schemas/Feedback",
    }
    schemas = document["components"]["schemas"]
    assert {"hook", "hookInstance", "context"} <= set(schemas["CDSRequest"]["required"])
    for ref in set(_refs(document)):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref


def test_openapi_still_documents_the_path_parameter_and_the_answers(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/cds-services/{service_id}", "/cds-services/{service_id}/feedback"):
        parameters = paths[path]["post"]["parameters"]
        assert [(p["name"], p["in"], p["required"]) for p in parameters] == [("service_id", "path", True)]
    ok = {path: paths[path]["post"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"] for path in paths if path.startswith("/cds-services/{")}
    assert ok == {
        "/cds-services/{service_id}": "#/components/schemas/CDSResponse",
        "/cds-services/{service_id}/feedback": "#/components/schemas/FeedbackReceipt",
    }


def test_an_unknown_service_is_still_a_404_on_both_routes(client):
    item = {"card": "c-1", "outcome": "accepted", "outcomeTimestamp": "2026-11-26T10:00:00Z"}
    for path, body in (("/cds-services/no-such-service", chart()), ("/cds-services/no-such-service/feedback", {"feedback": [item]})):
        response = client.post(path, json=body)
        assert response.status_code == 404 and response.json()["error"] == "unknown-service", response.text
