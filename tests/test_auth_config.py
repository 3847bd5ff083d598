"""Security configuration: what makes the service refuse to start, and the JWKS cache's limits."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cds_service.app import create_app
from cds_service.http.auth import StartupRefused
from cds_service.http.trusted_clients import KeyStore, TrustedClientsError, load_trusted_clients
from tests.conftest import make_settings
from tests.test_auth import EHR, Key, jwks_server, keys  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parent.parent


def test_jwt_without_trusted_clients_refuses_to_start(tmp_path):
    with pytest.raises(StartupRefused, match="CDS_TRUSTED_CLIENTS"):
        create_app(make_settings(tmp_path, auth_mode="jwt"))


def test_jwt_is_the_default_outside_development(tmp_path):
    with pytest.raises(StartupRefused, match="CDS_TRUSTED_CLIENTS"):
        create_app(make_settings(tmp_path, auth_mode=None, mode="production"))


@pytest.mark.parametrize(
    "content, message",
    [
        ({"clients": []}, "lists no clients"),
        ({}, "clients"),
        ({"clients": [{"iss": EHR}]}, "has no keys"),
        ({"clients": [{"iss": EHR, "jwks": {"keys": [{"kty": "oct", "kid": "k", "k": "c2VjcmV0"}]}}]}, "only EC and RSA"),
        ({"clients": [{"iss": EHR, "jwks_url": "http://keys.example.org/jwks"}]}, "https"),
        ({"clients": [{"iss": EHR, "jku_allow": ["ftp://keys.example.org/jwks"]}]}, "https"),
        ({"clients": [{"iss": EHR, "jwks_file": "missing.json"}]}, "missing.json"),
        ({"clients": [{"iss": EHR, "jwks_url": "https://a.example.org/k"}, {"iss": EHR, "jwks_url": "https://b.example.org/k"}]}, "twice"),
    ],
)
def test_bad_trusted_clients_files_refuse_to_start(tmp_path, content, message):
    path = tmp_path / "clients.json"
    path.write_text(json.dumps(content))
    with pytest.raises(StartupRefused, match=message):
        create_app(make_settings(tmp_path, auth_mode="jwt", trusted_clients=path))


def test_a_private_key_in_the_config_is_refused(tmp_path, keys):
    private = json.loads(__import__("jwt").get_algorithm_by_name("ES384").to_jwk(keys["es384"].private))
    path = tmp_path / "clients.json"
    path.write_text(json.dumps({"clients": [{"iss": EHR, "jwks": {"keys": [{**private, "kid": "k"}]}}]}))
    with pytest.raises(TrustedClientsError, match="private"):
        load_trusted_clients(path)


def test_yaml_config_with_jwks_file_relative_to_it(tmp_path, keys):
    (tmp_path / "ehr-keys.json").write_text(json.dumps({"keys": [keys["es384"].jwk]}))
    path = tmp_path / "clients.yaml"
    path.write_text(yaml.safe_dump({"clients": [{"iss": EHR, "jwks_file": "ehr-keys.json"}]}))
    clients = load_trusted_clients(path)
    assert set(clients[EHR].local_keys) == {keys["es384"].kid}


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "cds.example.org", "::"])
def test_auth_off_on_a_non_loopback_address_refuses_to_start(tmp_path, host):
    with pytest.raises(StartupRefused, match="not a loopback"):
        create_app(make_settings(tmp_path, auth_mode="off", host=host))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_auth_off_on_loopback_starts(tmp_path, host):
    create_app(make_settings(tmp_path, auth_mode="off", host=host))


def test_auth_off_elsewhere_needs_the_explicit_insecure_flag(tmp_path):
    create_app(make_settings(tmp_path, auth_mode="off", host="0.0.0.0", allow_insecure=True))


def test_cli_serve_refuses_with_a_clear_message_and_non_zero_exit(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env.update({"CDS_MODE": "development", "CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'd.db'}"})
    result = subprocess.run(
        [sys.executable, "-m", "cds_service", "serve", "--host", "0.0.0.0", "--port", "1"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert "not a loopback address" in result.stderr
    assert "Traceback" not in result.stderr


# --- the key cache ---------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_unknown_kid_refetches_at_most_once_per_interval_and_picks_up_rotation(tmp_path, keys, jwks_server):
    old, new = keys["es256"], Key(keys["es384"].private, "rotated-in", "ES384")
    jwks_server.documents["/jwks"] = {"keys": [old.jwk]}
    url = jwks_server.url("/jwks")
    path = tmp_path / "clients.json"
    path.write_text(json.dumps({"clients": [{"iss": EHR, "jwks_url": url}]}))
    client = load_trusted_clients(path)[EHR]
    clock = FakeClock()
    store = KeyStore({EHR: client}, ttl=300, refetch_interval=30, clock=clock)

    async def scenario() -> None:
        assert (await store.find(client, old.kid, None))["kid"] == old.kid
        jwks_server.documents["/jwks"] = {"keys": [old.jwk, new.jwk]}  # the EHR rotates its keys
        assert await store.find(client, new.kid, None) is None  # within the interval: no refetch
        assert jwks_server.fetches("/jwks") == 1
        clock.now += 31
        assert (await store.find(client, new.kid, None))["kid"] == new.kid  # one refetch
        assert await store.find(client, "never-existed", None) is None
        assert await store.find(client, "never-existed", None) is None
        assert jwks_server.fetches("/jwks") == 2
        clock.now += 301  # TTL over: the next lookup refreshes even for a known kid
        assert (await store.find(client, old.kid, None))["kid"] == old.kid
        assert jwks_server.fetches("/jwks") == 3

    asyncio.run(scenario())


def test_a_failing_key_server_is_not_hammered(tmp_path, jwks_server):
    url = jwks_server.url("/down")
    path = tmp_path / "clients.json"
    path.write_text(json.dumps({"clients": [{"iss": EHR, "jwks_url": url}]}))
    client = load_trusted_clients(path)[EHR]
    store = KeyStore({EHR: client}, ttl=300, refetch_interval=30, clock=FakeClock())

    async def scenario() -> None:
        for _ in range(5):
            assert await store.find(client, "any", None) is None

    asyncio.run(scenario())
    assert jwks_server.fetches("/down") == 1


def test_the_documented_example_loads_and_holds_the_sandbox_key(tmp_path):
    example = yaml.safe_load((ROOT / "docs" / "trusted-clients.example.yaml").read_text())
    example["clients"] = [c for c in example["clients"] if "jwks_file" not in c]  # its key file is illustrative
    path = tmp_path / "clients.yaml"
    path.write_text(yaml.safe_dump(example))
    clients = load_trusted_clients(path)
    sandbox = clients["https://sandbox.cds-hooks.org"].local_keys["44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"]
    from cds_service.http.auth import _public_key

    assert _public_key(sandbox, "ES384", "sandbox").algorithm_name == "ES384"
