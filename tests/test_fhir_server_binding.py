"""The service fetches from, and sends the EHR's access token to, only the FHIR servers the operator
listed for the caller: a verified client's `fhir_servers`, or CDS_FHIR_SERVERS with authentication
off (loopback servers only in development mode, none in production, when unset).

A recording listener on a second loopback port stands for every other server: it must see no
connection and no token.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from cds_service.app import create_app
from cds_service.http.auth import StartupRefused, check_startup
from cds_service.pipeline.fhir_access import FhirServerPolicy, policy_from_list
from cds_service.tooling import fixtures as fx
from cds_service.tooling.fixtures import DEFAULT_NOW
from tests.conftest import make_settings, outcomes
from tests.fhir_server import FhirTestServer

SERVICE = "/cds-services/rls-iron-patient-view"
PUBLIC_URL = "https://cds.example.org"
TOKEN = "patient-record-access-token-789"


class RecordingListener:
    """A TCP listener on loopback that records every connection and the bytes it was sent."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.socket.settimeout(0.2)
        self.connections = 0
        self.received = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.socket.getsockname()[1]}/fhir"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.socket.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            connection.settimeout(0.5)
            try:
                self.received += connection.recv(65536)
            except OSError:
                pass
            connection.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.socket.close()


@pytest.fixture
def listener() -> Iterator[RecordingListener]:
    server = RecordingListener()
    yield server
    server.close()


@pytest.fixture
def fhir() -> Iterator[FhirTestServer]:
    with FhirTestServer([fx.patient(), fx.ferritin(32, days_ago=20), fx.tsat(15)]) as server:
        yield server


def request_without_labs(fhir_server: str) -> dict[str, Any]:
    request = fx.cds_request([fx.patient(), fx.condition("rls")], fhir_server=fhir_server)
    del request["prefetch"]["labs"]
    request["fhirAuthorization"] = {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read", "subject": "cds"}
    return request


def refused(response: Any) -> list[dict[str, str]]:
    assert response.status_code == 412, response.text
    body = response.json()
    assert body["error"] == "prefetch-failed" and isinstance(body["detail"], str)
    return body["failures"]


def served(tmp_path: Path, **settings: Any) -> TestClient:
    app = create_app(make_settings(tmp_path, **settings))
    app.state.runtime.clock = lambda: DEFAULT_NOW
    return TestClient(app)


# -- with authentication: each client's own servers ------------------------------------------------


@pytest.fixture(scope="module")
def ehr_key() -> Any:
    return ec.generate_private_key(ec.SECP256R1())


def clients_file(tmp_path: Path, key: Any, fhir_servers: list[str]) -> Path:
    public = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    clients = {"clients": [{"iss": "https://ehr.example.org", "jwks": {"keys": [{**public, "kid": "k1", "alg": "ES256"}]}, "fhir_servers": fhir_servers}]}
    path = tmp_path / "clients.yaml"
    path.write_text(yaml.safe_dump(clients))
    return path


def bearer(key: Any) -> dict[str, str]:
    now = int(time.time())
    claims = {"iss": "https://ehr.example.org", "sub": "ehr", "aud": PUBLIC_URL + SERVICE, "iat": now, "exp": now + 120, "jti": f"jti-{time.monotonic_ns()}"}
    return {"Authorization": "Bearer " + jwt.encode(claims, key, algorithm="ES256", headers={"kid": "k1"})}


def test_a_verified_client_fetches_only_from_its_own_servers(tmp_path, ehr_key, fhir, listener):
    path = clients_file(tmp_path, ehr_key, [fhir.url])
    with served(tmp_path, auth_mode="jwt", trusted_clients=path, public_url=PUBLIC_URL, fhir_servers=None) as client:
        elsewhere = client.post(SERVICE, json=request_without_labs(listener.url), headers=bearer(ehr_key))
        own = client.post(SERVICE, json=request_without_labs(fhir.url), headers=bearer(ehr_key))

    failures = refused(elsewhere)
    assert [(f["key"], f["reason"]) for f in failures] == [("labs", "fhir-server-not-allowed")]
    assert "fhir_servers of issuer https://ehr.example.org in CDS_TRUSTED_CLIENTS" in failures[0]["message"]
    assert listener.connections == 0 and TOKEN.encode() not in listener.received
    assert outcomes(own) == ["start-oral-iron"]
    assert all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in fhir.requests)


def test_a_client_with_no_servers_listed_fetches_from_none(tmp_path, ehr_key, listener):
    path = clients_file(tmp_path, ehr_key, [])
    with served(tmp_path, auth_mode="jwt", trusted_clients=path, public_url=PUBLIC_URL, fhir_servers="loopback") as client:
        response = client.post(SERVICE, json=request_without_labs(listener.url), headers=bearer(ehr_key))
    # CDS_FHIR_SERVERS is the operator's list for unauthenticated use; it never widens a client's
    assert refused(response)[0]["reason"] == "fhir-server-not-allowed"
    assert listener.connections == 0


# -- without authentication: the operator's list ---------------------------------------------------


def test_production_without_a_list_fetches_from_nowhere(tmp_path, listener):
    with served(tmp_path, mode="production", fhir_servers=None) as client:
        response = client.post(SERVICE, json=request_without_labs(listener.url))
    failure = refused(response)[0]
    assert failure["reason"] == "fhir-server-not-allowed" and "CDS_FHIR_SERVERS" in failure["message"]
    assert listener.connections == 0


def test_the_operator_list_is_the_only_place_fetched_from(tmp_path, fhir, listener):
    with served(tmp_path, mode="production", fhir_servers=fhir.url) as client:
        elsewhere = client.post(SERVICE, json=request_without_labs(listener.url))
        listed = client.post(SERVICE, json=request_without_labs(fhir.url + "/"))
    assert refused(elsewhere)[0]["reason"] == "fhir-server-not-allowed"
    assert listener.connections == 0 and TOKEN.encode() not in listener.received
    assert outcomes(listed) == ["start-oral-iron"]


def test_development_mode_fetches_from_loopback_servers_only(tmp_path, listener):
    with served(tmp_path, mode="development", auth_mode=None, fhir_servers=None) as client:
        remote = client.post(SERVICE, json=request_without_labs("https://ehr.example.org/fhir"))
        local = client.post(SERVICE, json=request_without_labs(listener.url))
    assert refused(remote)[0]["reason"] == "fhir-server-not-allowed"
    assert local.status_code == 412  # the listener is no FHIR server, but it was allowed to be asked
    assert listener.connections >= 1


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://ehr.example.org/fhir", True),
        ("https://EHR.example.org:443/fhir/", True),
        ("https://ehr.example.org/fhir/r4", True),
        ("https://ehr.example.org/fhirx", False),
        ("https://ehr.example.org", False),
        ("http://ehr.example.org/fhir", False),
        ("https://ehr.example.org:8443/fhir", False),
        ("https://ehr.example.org.attacker.net/fhir", False),
        ("https://user@ehr.example.org/fhir", False),
        ("http://127.0.0.1:9/fhir", False),
    ],
)
def test_a_listed_base_allows_itself_and_the_paths_under_it(url, allowed):
    assert policy_from_list("https://ehr.example.org/fhir", "CDS_FHIR_SERVERS").allows(url) is allowed


def test_loopback_means_loopback_addresses_only():
    policy = FhirServerPolicy(any_loopback=True)
    assert policy.allows("http://127.0.0.1:8080/fhir") and policy.allows("http://localhost/fhir") and policy.allows("http://[::1]:9/fhir")
    assert not policy.allows("http://10.0.0.5/fhir") and not policy.allows("http://169.254.169.254/latest")


@pytest.mark.parametrize("listed", ["ftp://ehr.example.org", "https://ehr.example.org/fhir?x=1", "not a url", "https://u:p@ehr.example.org"])
def test_start_up_refuses_a_malformed_list(tmp_path, listed, ehr_key):
    with pytest.raises(StartupRefused, match="CDS_FHIR_SERVERS"):
        check_startup(make_settings(tmp_path, fhir_servers=listed))
    path = clients_file(tmp_path, ehr_key, [listed])
    with pytest.raises(StartupRefused, match="fhir_servers"):
        check_startup(make_settings(tmp_path, auth_mode="jwt", trusted_clients=path, public_url=PUBLIC_URL))
