"""Shared fixtures: an app on embedded defaults with a fixed clock, and an HTTP client for it."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cds_service.app import create_app
from cds_service.settings import Settings
from cds_service.tooling.fixtures import DEFAULT_NOW


pytest_plugins = ["tests.skip_summary"]


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "mode": "production",
        "auth_mode": "off",
        "database_url": f"sqlite:///{tmp_path / 'decisions.db'}",
        # the suite's FHIR servers listen on loopback ports chosen at random
        "fhir_servers": "loopback",
        # both profiles' services, as the profile tests call both
        "profiles": "article,aasm-2024",
    }
    values.update(overrides)
    return Settings(**values)


def make_app(tmp_path: Path, **overrides: object) -> FastAPI:
    """An app on embedded defaults (decision log under `tmp_path`) with the suite's fixed clock."""
    application = create_app(make_settings(tmp_path, **overrides))
    application.state.runtime.clock = lambda: DEFAULT_NOW
    return application


def serve(tmp_path: Path, **overrides: object) -> Iterator[TestClient]:
    """A started `make_app` and its client, for module-scoped fixtures: `yield from serve(...)`."""
    with TestClient(make_app(tmp_path, **overrides)) as client:
        yield client


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def app(settings: Settings):
    application = create_app(settings)
    application.state.runtime.clock = lambda: DEFAULT_NOW
    return application


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def outcomes(response) -> list[str]:
    """Outcome codes of the cards in a CDS Hooks response, sorted."""
    assert response.status_code == 200, response.text
    return sorted(card["source"]["topic"]["code"] for card in response.json()["cards"])


def pytest_sessionstart(session) -> None:
    """Capture every log record of the run: tests/phi_scan.py fails the run on patient data in logs."""
    from tests import phi_scan

    phi_scan.install()


def pytest_sessionfinish(session, exitstatus) -> None:
    from tests import phi_scan

    found = phi_scan.report()
    if found:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_sep("=", f"patient data in logs: {len(found)} line(s)", red=True)
            for line in found[:20]:
                reporter.write_line(line)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

