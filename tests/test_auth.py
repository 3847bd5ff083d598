"""The EHR's bearer JWT (CDS Hooks 2.0 security), through the HTTP API with real signed tokens.

Keys are generated per test session (EC P-384, P-256 and RSA 2048); JWKS documents are served by
a real local HTTP server that records every request, so "never fetched" is observable.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient

from cds_service.app import create_app
from cds_service.tooling import fixtures as fx
from cds_service.tooling.fixtures import DEFAULT_NOW
from tests.conftest import make_settings, outcomes

PUBLIC_URL = "https://cds.example.org"
SERVICE = "/cds-services/rls-iron-patient-view"
EHR = "https://ehr.example.org"
SANDBOX = "https://sandbox.cds-hooks.org"
SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"


class Key:
    """A private key with its public JWK (kid, alg)."""

    def __init__(self, private: Any, kid: str, alg: str) -> None:
        self.private, self.kid, self.alg = private, kid, alg

    @property
    def jwk(self) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.alg)
        public = json.loads(algorithm.to_jwk(self.private.public_key()))
        return {**public, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="session")
def keys() -> dict[str, Key]:
    rsa_private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {
        "es384": Key(ec.generate_private_key(ec.SECP384R1()), "ehr-es384", "ES384"),
        "rs384": Key(rsa_private, "ehr-rs384", "RS384"),
        "ps256": Key(rsa_private, "ehr-ps256", "PS256"),
        "es256": Key(ec.generate_private_key(ec.SECP256R1()), "remote-es256", "ES256"),
        "attacker": Key(ec.generate_private_key(ec.SECP384R1()), "attacker", "ES384"),
        "sandbox": Key(ec.generate_private_key(ec.SECP384R1()), "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f", "ES384"),
    }


def claims(audience: str = PUBLIC_URL + SERVICE, iss: str = EHR, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    values: dict[str, Any] = {"iss": iss, "sub": "client-1", "aud": audience, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def sign(key: Key, payload: dict[str, Any] | None = None, kid: str | None = None, **header: Any) -> str:
    return jwt.encode(payload or claims(), key.private, algorithm=key.alg, headers={"kid": kid or key.kid, **header})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    """A token PyJWT refuses to make (alg none, HS256 keyed with a public key)."""
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}.{b64(signature)}"


class JWKSServer:
    """A real HTTP server on loopback that serves JWKS documents and records every request."""

    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                owner.requests.append(self.path)
                document = owner.documents.get(self.path)
                body = json.dumps(document or {"error": "not found"}).encode()
                self.send_response(200 if document else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def fetches(self, path: str) -> int:
        return self.requests.count(path)


@pytest.fixture
def jwks_server() -> Iterator[JWKSServer]:
    server = JWKSServer()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def write_clients(tmp_path: Path, clients: list[dict[str, Any]]) -> Path:
    path = tmp_path / "trusted-clients.json"
    path.write_text(json.dumps({"clients": clients}))
    return path


def jwt_client(tmp_path: Path, clients: list[dict[str, Any]], **overrides: Any) -> TestClient:
    values: dict[str, Any] = {"auth_mode": "jwt", "trusted_clients": write_clients(tmp_path, clients), "public_url": PUBLIC_URL}
    settings = make_settings(tmp_path, **{**values, **overrides})
    app = create_app(settings)
    app.state.runtime.clock = lambda: DEFAULT_NOW
    return TestClient(app)


@pytest.fixture(scope="module")
def ehr_client(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Key]) -> Iterator[TestClient]:
    """One app for the module (every token has its own jti, so tests do not interfere)."""
    jwks = {"keys": [keys["es384"].jwk, keys["rs384"].jwk, keys["ps256"].jwk]}
    with jwt_client(tmp_path_factory.mktemp("auth"), [{"iss": EHR, "jwks": jwks}]) as client:
        yield client


def cds_request() -> dict[str, Any]:
    return fx.cds_request([fx.condition("rls"), fx.ferritin(32, days_ago=20)])


def call(client: TestClient, token: str | None, path: str = SERVICE, body: dict[str, Any] | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.post(path, json=body if body is not None else cds_request(), headers=headers)


def assert_unauthorized(response: Any) -> str:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    body = response.json()
    assert body["error"] == "unauthorized"
    assert set(body) == {"error", "detail"}
    return body["detail"]


# --- acceptance -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["es384", "rs384", "ps256"])
def test_a_token_signed_by_a_trusted_ehr_is_accepted_on_invoke(ehr_client, keys, name):
    response = call(ehr_client, sign(keys[name]))
    assert outcomes(response) == ["start-oral-iron"]


@pytest.mark.parametrize("name", ["es384", "rs384"])
def test_feedback_needs_and_accepts_a_token_for_the_feedback_url(ehr_client, keys, name):
    path = SERVICE + "/feedback"
    body = {"feedback": [{"card": str(uuid.uuid4()), "outcome": "accepted", "outcomeTimestamp": "2026-11-26T09:00:00Z"}]}
    assert_unauthorized(ehr_client.post(path, json=body))
    token = sign(keys[name], claims(audience=PUBLIC_URL + path))
    response = ehr_client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.json() == {"received": 1}


def test_discovery_needs_no_token(ehr_client):
    assert ehr_client.get("/cds-services").status_code == 200


def test_the_sandbox_form_is_accepted_with_its_key_configured_inline(tmp_path, keys, jwks_server):
    """ES384, iss https://sandbox.cds-hooks.org, kid + jku to a JWKS this machine cannot reach."""
    sandbox = keys["sandbox"]
    with jwt_client(tmp_path, [{"iss": SANDBOX, "jwks": {"keys": [sandbox.jwk]}}]) as client:
        token = sign(sandbox, claims(iss=SANDBOX), jku=SANDBOX_JKU, typ="JWT")
        assert outcomes(call(client, token)) == ["start-oral-iron"]


def test_audience_is_the_request_url_when_no_public_url_is_set(tmp_path, keys):
    with jwt_client(tmp_path, [{"iss": EHR, "jwks": {"keys": [keys["es384"].jwk]}}], public_url=None) as client:
        assert_unauthorized(call(client, sign(keys["es384"])))  # aud names https://cds.example.org
        token = sign(keys["es384"], claims(audience="http://testserver" + SERVICE))
        assert outcomes(call(client, token)) == ["start-oral-iron"]


# --- rejections -------------------------------------------------------------------------


def test_no_authorization_header(ehr_client):
    assert assert_unauthorized(call(ehr_client, None)) == "bearer token required"


@pytest.mark.parametrize("header", ["Bearer", "Bearer not-a-jwt", "Bearer a.b.c", "Basic dXNlcjpwYXNz", "Bearer x y"])
def test_malformed_authorization(ehr_client, header):
    response = ehr_client.post(SERVICE, json=cds_request(), headers={"Authorization": header})
    assert_unauthorized(response)


def test_alg_none_is_rejected(ehr_client, keys):
    token = handmade({"alg": "none", "typ": "JWT", "kid": keys["es384"].kid}, claims())
    assert_unauthorized(call(ehr_client, token))


def test_hs256_keyed_with_the_public_key_is_rejected(ehr_client, keys):
    """The classic key-confusion attack: HMAC with the server's own public key as the secret."""
    header = {"alg": "HS256", "typ": "JWT", "kid": keys["rs384"].kid}
    unsigned = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims()).encode())}"
    signature = hmac.new(keys["rs384"].public_pem(), unsigned.encode(), hashlib.sha256).digest()
    assert_unauthorized(call(ehr_client, f"{unsigned}.{b64(signature)}"))


def test_wrong_signature_is_rejected(ehr_client, keys):
    forged = sign(keys["attacker"], kid=keys["es384"].kid)
    assert_unauthorized(call(ehr_client, forged))


def test_tampered_payload_is_rejected(ehr_client, keys):
    header, _, signature = sign(keys["es384"]).split(".")
    payload = b64(json.dumps(claims(sub="someone-else")).encode())
    assert_unauthorized(call(ehr_client, f"{header}.{payload}.{signature}"))


def test_unknown_issuer_is_rejected(ehr_client, keys):
    detail = assert_unauthorized(call(ehr_client, sign(keys["es384"], claims(iss="https://other.example.org"))))
    assert "other.example.org" not in detail


def test_unknown_kid_is_rejected(ehr_client, keys):
    detail = assert_unauthorized(call(ehr_client, sign(keys["es384"], kid="no-such-key")))
    assert "no-such-key" not in detail


def test_a_key_of_the_wrong_type_for_the_algorithm_is_rejected(ehr_client, keys):
    """An EC key published under an RSA kid must not verify an ES384 token."""
    assert_unauthorized(call(ehr_client, sign(keys["es384"], kid=keys["rs384"].kid)))


def test_jku_not_on_the_allow_list_is_never_fetched(tmp_path, keys, jwks_server):
    jwks_server.documents["/evil.json"] = {"keys": [keys["attacker"].jwk]}
    with jwt_client(tmp_path, [{"iss": EHR, "jwks": {"keys": [keys["es384"].jwk]}}]) as client:
        token = sign(keys["attacker"], jku=jwks_server.url("/evil.json"))
        assert_unauthorized(call(client, token))
    assert jwks_server.requests == []


def test_allow_listed_jku_is_fetched_once_and_cached(tmp_path, keys, jwks_server):
    remote = keys["es256"]
    jwks_server.documents["/jwks.json"] = {"keys": [remote.jwk]}
    jku = jwks_server.url("/jwks.json")
    with jwt_client(tmp_path, [{"iss": EHR, "jku_allow": [jku]}]) as client:
        for _ in range(3):
            assert outcomes(call(client, sign(remote, jku=jku))) == ["start-oral-iron"]
    assert jwks_server.fetches("/jwks.json") == 1


def test_jwks_url_is_fetched_once_and_an_unknown_kid_does_not_refetch_at_once(tmp_path, keys, jwks_server):
    remote = keys["es256"]
    jwks_server.documents["/keys"] = {"keys": [remote.jwk]}
    with jwt_client(tmp_path, [{"iss": EHR, "jwks_url": jwks_server.url("/keys")}]) as client:
        assert outcomes(call(client, sign(remote))) == ["start-oral-iron"]
        for _ in range(3):
            assert_unauthorized(call(client, sign(remote, kid="rotated-away")))
    assert jwks_server.fetches("/keys") == 1


def test_wrong_audience_is_rejected(ehr_client, keys):
    token = sign(keys["es384"], claims(audience="https://cds.example.org/cds-services/some-other-service"))
    assert assert_unauthorized(call(ehr_client, token)) == "bearer token audience does not match this service"


def test_expired_token_is_rejected(ehr_client, keys):
    now = int(time.time())
    token = sign(keys["es384"], claims(iat=now - 900, exp=now - 300))
    assert_unauthorized(call(ehr_client, token))


def test_token_issued_in_the_future_is_rejected(ehr_client, keys):
    now = int(time.time())
    token = sign(keys["es384"], claims(iat=now + 600, exp=now + 900))
    assert_unauthorized(call(ehr_client, token))


def test_small_clock_skew_is_tolerated(ehr_client, keys):
    now = int(time.time())
    token = sign(keys["es384"], claims(iat=now + 20, exp=now + 320))
    assert outcomes(call(ehr_client, token)) == ["start-oral-iron"]


@pytest.mark.parametrize("claim", ["jti", "exp", "iat", "aud"])
def test_missing_required_claim_is_rejected(ehr_client, keys, claim):
    assert_unauthorized(call(ehr_client, sign(keys["es384"], claims(**{claim: None}))))


def test_replayed_jti_is_rejected(ehr_client, keys):
    token = sign(keys["es384"])
    assert outcomes(call(ehr_client, token)) == ["start-oral-iron"]
    assert assert_unauthorized(call(ehr_client, token)) == "bearer token already used"
    again = sign(keys["es384"], claims(jti=jwt.decode(token, options={"verify_signature": False})["jti"]))
    assert_unauthorized(call(ehr_client, again))


def test_a_rejected_token_does_not_burn_its_jti(ehr_client, keys):
    """Only verified tokens enter the replay cache: garbage cannot lock a client out."""
    payload = claims()
    assert_unauthorized(call(ehr_client, sign(keys["attacker"], payload, kid=keys["es384"].kid)))
    assert outcomes(call(ehr_client, sign(keys["es384"], payload))) == ["start-oral-iron"]


def test_long_lived_tokens_are_rejected(ehr_client, keys):
    now = int(time.time())
    assert_unauthorized(call(ehr_client, sign(keys["es384"], claims(iat=now, exp=now + 86400))))


def test_rejection_details_never_echo_the_token_or_key_ids(ehr_client, keys):
    token = sign(keys["attacker"], kid="attacker-kid-123", jku="https://evil.example.org/jwks")
    response = call(ehr_client, token)
    assert_unauthorized(response)
    for secret in (token, "attacker-kid-123", "evil.example.org", EHR):
        assert secret not in response.text


def test_the_token_is_checked_before_the_body_is_read(ehr_client, keys):
    """Unauthenticated callers cannot make the service parse anything: 401 even for bad bodies."""
    for body in (b"{not json", b"[" * 5000, json.dumps({"hook": 1}).encode()):
        response = ehr_client.post(SERVICE, content=body, headers={"Content-Type": "application/json"})
        assert assert_unauthorized(response) == "bearer token required"
    response = ehr_client.post(SERVICE, content=b"{not json", headers={"Content-Type": "application/json", "Authorization": f"Bearer {sign(keys['es384'])}"})
    assert response.status_code == 400  # with a valid token, the body is judged
