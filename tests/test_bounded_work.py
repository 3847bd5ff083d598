"""Bounded work per request, and no request blocks the others.

Limits on what one request may hold (array items, string size, elements per resource) are
answered with a 413 naming the limit; a large request is evaluated on a worker thread, so that a
small request from another client is answered meanwhile. One uvicorn worker on loopback; the
latency bounds are generous (a correctness test: the figures themselves are in `make bench`).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Iterator

import httpx
import orjson
import pytest

from cds_service.tooling import fixtures as fx
from tests.conftest import make_app
from tests.live_server import live_server

SERVICE = "/cds-services/rls-iron-patient-view"
SMALL = fx.cds_request([fx.patient(), fx.condition("rls"), fx.ferritin(32, days_ago=20), fx.tsat(15)])


def components(count: int) -> dict[str, Any]:
    observation = fx.ferritin(32, days_ago=20)
    observation["component"] = [{"code": {"text": "part"}, "valueQuantity": {"value": n}} for n in range(count)]
    return fx.cds_request([fx.patient(), fx.condition("rls"), observation])


def many_observations(count: int) -> dict[str, Any]:
    """About 4 MB within every limit: the most work one request may cause."""
    labs = [fx.ferritin(20 + n % 300, days_ago=1 + n % 700, note=[{"text": "x" * 300}]) for n in range(count)]
    return fx.cds_request([fx.patient(), fx.condition("rls"), *labs])


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with live_server(make_app(tmp_path_factory.mktemp("bounded"), max_body_bytes=8_000_000)) as base:
        yield base + SERVICE


def assert_refused(response: httpx.Response, code: str, setting: str) -> None:
    assert response.status_code == 413, response.text[:300]
    body = response.json()
    assert body["error"] == code and setting in body["detail"]


def test_an_array_over_the_limit_is_refused_naming_it(url):
    response = httpx.post(url, json=components(57_000), timeout=30)
    assert_refused(response, "array-too-long", "CDS_MAX_ARRAY_ITEMS")


def test_a_string_over_the_limit_is_refused_naming_it(url):
    request = fx.cds_request([fx.patient(), fx.condition("rls"), fx.ferritin(32, days_ago=20, note=[{"text": "x" * 1_100_000}])])
    assert_refused(httpx.post(url, json=request, timeout=30), "string-too-long", "CDS_MAX_STRING_CHARS")


def test_a_resource_with_too_many_elements_is_refused_naming_it(url):
    observation = fx.ferritin(32, days_ago=20)
    observation["extension"] = [{"url": f"https://example.org/x{n}", "valueString": "v"} for n in range(9_000)]
    observation["modifierExtension"] = [{"url": f"https://example.org/y{n}", "valueString": "v"} for n in range(9_000)]
    request = fx.cds_request([fx.patient(), fx.condition("rls"), observation])
    assert_refused(httpx.post(url, json=request, timeout=30), "resource-too-large", "CDS_MAX_RESOURCE_ELEMENTS")


def test_a_chart_within_the_limits_is_answered(url):
    response = httpx.post(url, json=components(9_000), timeout=30)
    assert response.status_code == 200


def test_a_heavy_request_does_not_hold_up_small_ones(url):
    heavy = json.dumps(many_observations(4_800)).encode()
    assert 3_500_000 < len(heavy) < 5_000_000
    outcome: dict[str, Any] = {}

    def send_heavy() -> None:
        started = time.monotonic()
        response = httpx.post(url, content=heavy, headers={"Content-Type": "application/json"}, timeout=60)
        outcome["status"], outcome["seconds"] = response.status_code, time.monotonic() - started

    worst = 0.0
    with httpx.Client(timeout=30) as client:
        client.post(url, json=SMALL)  # warm: the first request builds what every later one reuses
        thread = threading.Thread(target=send_heavy)
        thread.start()
        time.sleep(0.05)
        small = 0
        while thread.is_alive() or small < 5:
            started = time.monotonic()
            assert client.post(url, json=SMALL).status_code == 200
            worst = max(worst, time.monotonic() - started)
            small += 1
            time.sleep(0.01)
        thread.join()
    assert outcome["status"] == 200
    assert outcome["seconds"] < 2.0, outcome
    assert worst < 0.3, f"a small request waited {worst:.3f} s while the heavy one ran"


@pytest.mark.parametrize("entry", [None, "x", 3, {"resource": None}, [None, 1, "x"]])
def test_a_bundle_with_a_malformed_entry_is_walked_without_error(entry):
    from cds_service.http.limits import BodyLimits, containers, depth_of, resource_problem, structure

    limits = BodyLimits(max_depth=64, max_entries=5000, max_array_items=3, max_string_chars=100, max_resource_elements=50)
    request = {"prefetch": {"labs": {"resourceType": "Bundle", "entry": entry, "x": None}}}
    assert resource_problem(request, limits) is None
    assert containers(request, limits.max_array_items) == (depth_of(structure(orjson.dumps(request))), None)
