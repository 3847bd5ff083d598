"""Hardening seen from outside: size/shape limits, CORS, security headers, errors, logs, ops endpoints."""

from __future__ import annotations

import io
import json
import logging
from typing import Any, Iterator

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from cds_service import pipeline
from cds_service.http import limits
from cds_service.observability.logging import JsonFormatter
from cds_service.tooling import fixtures as fx
from tests.conftest import make_app, outcomes

SERVICE = "/cds-services/rls-iron-patient-view"
ORDER_SIGN = "/cds-services/rls-iron-order-sign"


def build_client(tmp_path, **overrides: Any) -> TestClient:
    app = make_app(tmp_path, **overrides)
    return TestClient(app)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Iterator[TestClient]:
    """One app with small limits for the module, so tests stay fast (monkeypatches are undone per test)."""
    tmp = tmp_path_factory.mktemp("hardening")
    with build_client(tmp, max_body_bytes=200_000, max_json_depth=20, max_bundle_entries=40) as client:
        yield client


def assert_json_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"] == code


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth - 1):
        value = {"x": value}
    return {"a": value} if depth else value


# --- size and shape ------------------------------------------------------------------------


def test_declared_oversize_body_gets_413(small):
    body = json.dumps(fx.cds_request([fx.condition("rls")], padding="x" * 250_000))
    assert_json_error(small.post(SERVICE, content=body, headers={"Content-Type": "application/json"}), 413, "payload-too-large")


def test_streamed_oversize_body_gets_413(small):
    chunks = (b" " * 50_000 for _ in range(6))  # no Content-Length: chunked
    assert_json_error(small.post(SERVICE, content=chunks, headers={"Content-Type": "application/json"}), 413, "payload-too-large")


def test_json_nested_too_deep_gets_400(small):
    request = fx.cds_request([fx.condition("rls")])
    request["context"]["deep"] = nested(25)
    assert_json_error(small.post(SERVICE, json=request), 400, "json-too-deep")


def test_json_nested_beyond_any_parser_limit_gets_400(small):
    body = "[" * 5000 + "]" * 5000
    assert_json_error(small.post(SERVICE, content=body, headers={"Content-Type": "application/json"}), 400, "json-too-deep")


def test_json_within_the_depth_limit_is_answered(small):
    request = fx.cds_request([fx.condition("rls"), fx.ferritin(32, days_ago=20)])
    request["context"]["deep"] = nested(12)
    assert outcomes(small.post(SERVICE, json=request)) == ["start-oral-iron"]


def test_too_many_bundle_entries_in_prefetch_gets_413(small):
    labs = [fx.ferritin(40 + i % 5, days_ago=20 + i) for i in range(41)]
    assert_json_error(small.post(SERVICE, json=fx.cds_request([fx.condition("rls"), *labs])), 413, "too-many-entries")


def test_entries_are_counted_across_prefetch_and_draft_orders(small):
    labs = [fx.ferritin(40 + i % 5, days_ago=20 + i) for i in range(25)]
    drafts = [fx.draft_order("ferrous-sulfate") for _ in range(16)]
    request = fx.cds_request([fx.condition("rls"), *labs], hook="order-sign", drafts=drafts)
    assert_json_error(small.post(ORDER_SIGN, json=request), 413, "too-many-entries")
    request["context"]["draftOrders"]["entry"] = request["context"]["draftOrders"]["entry"][:14]
    assert small.post(ORDER_SIGN, json=request).status_code == 200


def test_malformed_json_gets_a_json_400(small):
    response = small.post(SERVICE, content=b'{"hook": "patient-view", ', headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")


def test_unknown_route_and_method_get_json_errors(small):
    assert_json_error(small.get("/no/such/thing"), 404, "not-found")
    assert_json_error(small.delete(SERVICE), 405, "method-not-allowed")


# --- errors --------------------------------------------------------------------------------


def test_an_unexpected_error_is_a_json_500_without_trace_or_patient_data(small, monkeypatch, caplog):
    def explode(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom for patient Jane Example born 1975-04-12")

    monkeypatch.setattr(pipeline, "answer", explode)
    with caplog.at_level(logging.INFO):
        response = small.post(SERVICE, json=fx.cds_request([fx.condition("rls")]))
    assert_json_error(response, 500, "internal-error")
    assert "Jane" not in response.text and "Traceback" not in response.text and "RuntimeError" not in response.text
    assert response.headers["x-content-type-options"] == "nosniff"
    logged = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert "RuntimeError" in logged
    assert "Jane" not in logged and "1975-04-12" not in logged


def test_an_error_in_a_middleware_is_a_json_500_with_headers_and_request_id(small, monkeypatch, caplog):
    """Edge, the outermost layer, answers for a middleware that fails (here the JSON limits)."""

    def explode(body: bytes) -> bytes:
        raise RuntimeError("boom while reading patient Jane Example")

    monkeypatch.setattr(limits, "structure", explode)
    with caplog.at_level(logging.INFO):
        response = small.post(SERVICE, json=fx.cds_request([fx.condition("rls")]), headers={"X-Request-ID": "ehr-req-500"})
    assert_json_error(response, 500, "internal-error")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-request-id"] == "ehr-req-500"
    logged = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert "RuntimeError" in logged and "Jane" not in logged


# --- headers -------------------------------------------------------------------------------


@pytest.mark.parametrize("method, path", [("get", "/cds-services"), ("post", SERVICE), ("get", "/healthz"), ("get", "/nope")])
def test_security_headers_on_every_answer(small, method, path):
    kwargs = {"json": fx.cds_request([fx.condition("rls")])} if method == "post" else {}
    response = getattr(small, method)(path, **kwargs)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-eval" not in csp
    assert response.headers["cache-control"] == "no-store"


def test_security_headers_on_middleware_rejections(small):
    response = small.post(SERVICE, content=b"[" * 100 + b"]" * 100, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"


def test_hsts_only_when_served_over_https(tmp_path):
    with build_client(tmp_path, public_url="https://cds.example.org") as client:
        assert client.get("/healthz").headers["strict-transport-security"].startswith("max-age=")
    with build_client(tmp_path) as client:
        assert "strict-transport-security" not in client.get("/healthz").headers


def test_request_id_is_echoed_or_generated(small):
    assert small.get("/healthz", headers={"X-Request-ID": "ehr-req-42"}).headers["x-request-id"] == "ehr-req-42"
    generated = small.get("/healthz").headers["x-request-id"]
    assert len(generated) == 32
    unsafe = small.get("/healthz", headers={"X-Request-ID": "bad id; <script>"}).headers["x-request-id"]
    assert unsafe != "bad id; <script>" and " " not in unsafe


# --- CORS ----------------------------------------------------------------------------------

PREFLIGHT = {
    "Origin": "https://sandbox.cds-hooks.org",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}


def test_production_allows_no_cross_origin_by_default(small):
    response = small.options(SERVICE, headers=PREFLIGHT)
    assert "access-control-allow-origin" not in response.headers
    real = small.get("/cds-services", headers={"Origin": "https://sandbox.cds-hooks.org"})
    assert "access-control-allow-origin" not in real.headers


def test_configured_origin_gets_a_working_preflight(tmp_path):
    with build_client(tmp_path, cors_origins="https://sandbox.cds-hooks.org, https://ehr.example.org") as client:
        response = client.options(SERVICE, headers=PREFLIGHT)
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://sandbox.cds-hooks.org"
        allowed = response.headers["access-control-allow-headers"].lower()
        assert "authorization" in allowed and "content-type" in allowed
        assert "POST" in response.headers["access-control-allow-methods"]
        real = client.post(SERVICE, json=fx.cds_request([fx.condition("rls")]), headers={"Origin": "https://ehr.example.org"})
        assert real.headers["access-control-allow-origin"] == "https://ehr.example.org"
        other = client.options(SERVICE, headers={**PREFLIGHT, "Origin": "https://evil.example.org"})
        assert other.status_code == 400
        assert "access-control-allow-origin" not in other.headers


def test_development_mode_allows_any_origin(tmp_path):
    with build_client(tmp_path, mode="development") as client:
        response = client.options(SERVICE, headers={**PREFLIGHT, "Origin": "http://localhost:3000"})
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] in ("*", "http://localhost:3000")
        assert "authorization" in response.headers["access-control-allow-headers"].lower()


def test_only_browser_requests_pass_through_cors_and_every_answer_varies_by_origin(tmp_path):
    """Calls without an Origin (an EHR's server) skip the CORS layer; the answer still says
    `Vary: Origin`, as Starlette's CORS would have, so that no cache hands it to a browser."""
    with build_client(tmp_path, mode="development") as client:
        server = client.post(SERVICE, json=fx.cds_request([fx.condition("rls")]))
        assert server.status_code == 200
        assert "access-control-allow-origin" not in server.headers
        assert server.headers["vary"] == "Origin"
        browser = client.post(SERVICE, json=fx.cds_request([fx.condition("rls")]), headers={"Origin": "http://localhost:3000"})
        assert browser.status_code == 200
        assert browser.headers["access-control-allow-origin"] in ("*", "http://localhost:3000")
        assert [v.strip() for v in browser.headers["vary"].split(",")] == ["Origin"]
        assert "x-request-id" in browser.headers["access-control-expose-headers"].lower()


def test_preflight_needs_no_token_when_jwt_is_on(tmp_path):
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps({"clients": [{"iss": "https://ehr.example.org", "jwks_url": "https://ehr.example.org/jwks"}]}))
    with build_client(tmp_path, auth_mode="jwt", trusted_clients=clients, cors_origins="https://sandbox.cds-hooks.org") as client:
        assert client.options(SERVICE, headers=PREFLIGHT).status_code == 200
        refused = client.post(SERVICE, json=fx.cds_request([]), headers={"Origin": "https://sandbox.cds-hooks.org"})
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == "https://sandbox.cds-hooks.org"


# --- readiness, metrics, logs --------------------------------------------------------------


def test_readyz_is_ready_once_started(small):
    response = small.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"started": True, "rules": True, "decision_log": True}}


def test_readyz_fails_while_the_decision_log_is_unhealthy(small, monkeypatch):
    monkeypatch.setattr(small.app.state.runtime.decision_log, "healthy", lambda: False)
    response = small.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["decision_log"] is False
    assert small.get("/healthz").status_code == 200  # alive, just not ready


def test_readyz_fails_without_rules(small, monkeypatch):
    monkeypatch.setattr(small.app.state.runtime, "engines", {})
    assert small.get("/readyz").status_code == 503


def test_readyz_fails_before_start_up(tmp_path):
    client = build_client(tmp_path)  # no `with`: the lifespan has not run
    assert client.get("/readyz").status_code == 503


def test_metrics_count_requests_latency_per_service_and_cards(small):
    assert outcomes(small.post(SERVICE, json=fx.cds_request([fx.condition("rls"), fx.ferritin(32, days_ago=20)]))) == ["start-oral-iron"]
    small.post(SERVICE, json={"hook": "patient-view"})
    response = small.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'cds_request_seconds_bucket{le="0.001",service="rls-iron-patient-view"}' in text
    assert 'cds_http_request_seconds_count{method="POST",route="/cds-services/{service_id}",service="rls-iron-patient-view"}' in text
    assert 'status="400"' in text
    assert 'cds_cards_total{outcome="start-oral-iron"}' in text
    for name in ("cds_fhir_fetch_failures_total", "cds_decision_log_backlog", "cds_requests_total"):
        assert name in text


def test_one_json_access_line_per_request_with_request_and_decision_ids(small):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("cds_service")
    logger.addHandler(handler)
    try:
        response = small.post(
            SERVICE, json=fx.cds_request([fx.condition("rls"), fx.ferritin(32, days_ago=20)]), headers={"X-Request-ID": "req-7"}
        )
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    access = [line for line in lines if line["logger"] == "cds_service.access"]
    assert len(access) == 1
    entry = access[0]
    assert entry["request_id"] == "req-7"
    assert entry["decision_id"] == response.json()["extension"]["decision-id"]
    assert entry["status"] == 200 and entry["method"] == "POST" and entry["service"] == "rls-iron-patient-view"
    assert entry["rules"] and all(isinstance(rule, str) for rule in entry["rules"])
    assert isinstance(entry["duration_ms"], float)
    assert all(line.get("request_id") == "req-7" for line in lines)
    assert "ferritin" not in json.dumps(entry).lower() or "ferritin" in " ".join(entry["rules"]).lower()


# --- the depth on its own: exact for any JSON, brackets and escapes inside strings included ----

_TRICKY_TEXT = st.text(alphabet=st.sampled_from(list('ab[]{}"\\/\n\u00e9')), max_size=8)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | _TRICKY_TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_TRICKY_TEXT, children, max_size=4),
    max_leaves=30,
)


def _true_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_true_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_true_depth(v) for v in value), default=0)
    return 0


@hypothesis_settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(_JSON, st.booleans())
def test_the_depth_is_exact(value, compact):
    body = orjson.dumps(value) if compact else json.dumps(value, indent=1, ensure_ascii=False).encode()
    assert limits.depth_of(limits.structure(body)) == _true_depth(value)


def _values(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + sum(_values(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(_values(v) for v in value)
    return 1


@hypothesis_settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(_JSON, st.booleans())
def test_the_value_bound_is_never_below_the_values(value, compact):
    """The guard skips the per-resource walk only when the body cannot hold enough values to
    break a limit: its bound must never undercount (and empty arrays are its only slack)."""
    body = orjson.dumps(value) if compact else json.dumps(value, indent=1, ensure_ascii=False).encode()
    assert limits.values_at_most(limits.structure(body)) >= _values(value)


_RESOURCE = st.dictionaries(_TRICKY_TEXT, _JSON, max_size=4).map(lambda r: {"resourceType": "Observation", **r})
_REQUEST = st.lists(_RESOURCE, max_size=4).map(
    lambda resources: {"hook": "patient-view", "prefetch": {"labs": {"resourceType": "Bundle", "entry": [{"resource": r} for r in resources]}}}
)


_UNREACHED = st.just(10**6)  # a limit no generated body comes near: the guard may skip its walk


@hypothesis_settings(max_examples=600, deadline=None, derandomize=True, database=None)
@given(_REQUEST, st.integers(1, 6), st.integers(1, 40) | _UNREACHED, st.integers(1, 40) | _UNREACHED, st.integers(2, 9) | st.just(64))
def test_the_guard_refuses_exactly_what_the_full_walk_refuses(request, max_items, max_chars, max_elements, max_depth):
    """Walking less (only the limits the body could break, or only its containers, which then
    give the depth too) refuses the same bodies, with the same answer, as walking every value."""
    body = orjson.dumps(request)
    bounds = limits.BodyLimits(max_depth=max_depth, max_entries=5000, max_array_items=max_items, max_string_chars=max_chars, max_resource_elements=max_elements)
    problem, parsed = limits.check_body(body, bounds)
    too_deep = (400, "json-too-deep", f"JSON nested deeper than {max_depth} levels")
    assert problem == (too_deep if _true_depth(request) > max_depth else limits.resource_problem(request, bounds))
    assert (parsed is limits.UNPARSED) == (problem is not None)


@hypothesis_settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(_JSON | _REQUEST)
def test_the_container_walk_gives_the_exact_depth(value):
    assert limits.containers(value, 10**6) == (_true_depth(value), None)
