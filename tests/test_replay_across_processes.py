"""One signed token is accepted once, whichever process answers: with 2 workers of one service,
and with two service processes on one database (SQLite file; PostgreSQL when
CDS_TEST_POSTGRES_URL is set). The seen JWT ids live in the decision log's database."""

from __future__ import annotations

import json
import os
import time
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from cds_service.tooling import fixtures as fx
from tests.test_workers import supervised_service

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_URL = "https://cds.example.org"
SERVICE = "/cds-services/rls-iron-patient-view"
ISSUER = "https://ehr.example.org"
REQUEST = fx.cds_request([fx.patient(), fx.condition("rls"), fx.ferritin(32, days_ago=20)])
TRIES = 20


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def clients_file(directory: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    public = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    path = directory / "clients.json"
    path.write_text(json.dumps({"clients": [{"iss": ISSUER, "jwks": {"keys": [{**public, "kid": "k1", "alg": "ES256"}]}}]}))
    return path


def token(key: ec.EllipticCurvePrivateKey) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "ehr", "aud": PUBLIC_URL + SERVICE, "iat": now, "exp": now + 120, "jti": str(uuid.uuid4())}
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": "k1"})


@contextmanager
def service(directory: Path, database_url: str, clients: Path, workers: int) -> Iterator[str]:
    settings = {
        "CDS_AUTH_MODE": "jwt",
        "CDS_MODE": "production",
        "CDS_TRUSTED_CLIENTS": str(clients),
        "CDS_PUBLIC_URL": PUBLIC_URL,
        "CDS_DATABASE_URL": database_url,
    }
    with supervised_service(settings, workers) as (_, base):
        yield base


def post_fresh(base: str, bearer: str) -> int:
    """One request on a new connection (so successive tries can land on any worker)."""
    with httpx.Client(timeout=30, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        return client.post(base + SERVICE, json=REQUEST, headers={"Authorization": f"Bearer {bearer}", "Connection": "close"}).status_code


def database_urls(tmp_path: Path) -> list[str]:
    urls = [f"sqlite:///{tmp_path / 'shared.db'}"]
    if os.environ.get("CDS_TEST_POSTGRES_URL"):
        urls.append(os.environ["CDS_TEST_POSTGRES_URL"])
    return urls


def test_one_token_is_accepted_once_by_two_workers(tmp_path, key):
    clients = clients_file(tmp_path, key)
    with service(tmp_path, f"sqlite:///{tmp_path / 'decisions.db'}", clients, workers=2) as base:
        bearer = token(key)
        statuses = [post_fresh(base, bearer) for _ in range(TRIES)]
        fresh = post_fresh(base, token(key))
    assert statuses.count(200) == 1 and statuses.count(401) == TRIES - 1, statuses
    assert fresh == 200


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_one_token_is_accepted_once_by_two_services_on_one_database(tmp_path, key, backend):
    urls = {url.split(":")[0].split("+")[0]: url for url in database_urls(tmp_path)}
    if backend not in urls:
        pytest.skip("CDS_TEST_POSTGRES_URL is not set (see .ci/run)")
    url = urls[backend]
    clients = clients_file(tmp_path, key)
    with ExitStack() as stack:
        first = stack.enter_context(service(tmp_path, url, clients, workers=1))
        second = stack.enter_context(service(tmp_path, url, clients, workers=1))
        bearer = token(key)
        statuses = [post_fresh(first if n % 2 == 0 else second, bearer) for n in range(TRIES)]
    assert statuses.count(200) == 1 and statuses.count(401) == TRIES - 1, statuses

