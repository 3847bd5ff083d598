"""Property-based attack on the running service from its own OpenAPI document (schemathesis).

Schemathesis generates valid and invalid requests for every operation; every answer must be
a non-5xx and match the documented status codes, content types and schemas. Bounded: at most
MAX_EXAMPLES per operation, so it runs in well under two minutes.
"""

from __future__ import annotations

from typing import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from cds_service.app import create_app
from tests.conftest import make_settings
from tests.live_server import live_server

MAX_EXAMPLES = 50


@pytest.fixture(scope="module")
def base_url(tmp_path_factory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("schemathesis")
    # fhirServer values are generated too: fetches go nowhere fast.
    app = create_app(make_settings(tmp, fhir_connect_timeout=0.2, fhir_read_timeout=0.2, fhir_total_timeout=0.5))
    with live_server(app) as url:
        yield url


def _openapi() -> dict:
    """The document the running app serves (built once at collection, without serving)."""
    import tempfile
    from pathlib import Path

    return create_app(make_settings(Path(tempfile.mkdtemp()))).openapi()


schema = schemathesis.openapi.from_dict(_openapi())


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_within_its_contract(case, base_url):
    # Valid-by-schema but refused is expected: the schema cannot say "this service answers only
    # patient-view" or "fhirServer is http(s)". Everything else is checked.
    case.call_and_validate(base_url=base_url, excluded_checks=[positive_data_acceptance])
