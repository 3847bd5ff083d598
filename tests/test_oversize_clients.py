"""A body over the limit is answered with the 413 JSON in a way every ordinary client can read,
including those that write the whole body before reading the answer (Python's urllib, requests,
Java's HttpClient): the service reads and discards the rest of the body (up to a bound) before
answering, then closes the connection. A real uvicorn on loopback; 6 MB bodies."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Iterator

import httpx
import pytest

from tests.conftest import make_app
from tests.live_server import live_server

SERVICE = "/cds-services/rls-iron-patient-view"
SIX_MB = b'{"hook": "patient-view", "padding": "' + b"x" * (6 * 1024 * 1024) + b'"}'


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with live_server(make_app(tmp_path_factory.mktemp("oversize"))) as base:
        yield base + SERVICE


def assert_413(status: int, body: bytes) -> None:
    assert status == 413
    answer = json.loads(body)
    assert answer["error"] == "payload-too-large" and "5242880" in answer["detail"]


def test_urllib_posting_6_mb_reads_the_413(url):
    request = urllib.request.Request(url, data=SIX_MB, headers={"Content-Type": "application/json"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert_413(refused.value.code, refused.value.read())


def test_httpx_posting_6_mb_reads_the_413(url):
    response = httpx.post(url, content=SIX_MB, headers={"Content-Type": "application/json"}, timeout=30)
    assert_413(response.status_code, response.content)
    assert response.headers["connection"] == "close"


def test_httpx_streaming_6_mb_without_a_length_reads_the_413(url):
    def chunks() -> Iterator[bytes]:
        for start in range(0, len(SIX_MB), 256 * 1024):
            yield SIX_MB[start : start + 256 * 1024]

    response = httpx.post(url, content=chunks(), headers={"Content-Type": "application/json"}, timeout=30)
    assert_413(response.status_code, response.content)


def test_the_service_answers_the_next_request_normally(url):
    for _ in range(3):
        httpx.post(url, content=SIX_MB, headers={"Content-Type": "application/json"}, timeout=30)
    response = httpx.post(url, json={"hook": "patient-view"}, timeout=10)
    assert response.status_code == 400
