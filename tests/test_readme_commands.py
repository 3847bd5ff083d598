"""The README's example commands give each example's named outcome whatever the date: every
`cds-service examples request NAME | curl .../cds-services/SERVICE` line is run with the clock a
year ahead (the request generated for that day, the service answering on that day)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cds_service.cli import app as cli
from cds_service.engine.ruleset import load_outcomes
from cds_service.tooling.offline import find_example_or_request
from tests.conftest import make_app, outcomes

ROOT = Path(__file__).resolve().parents[1]
COMMAND = re.compile(r"cds-service examples request (\S+) \|\s*\n?\s*curl -s http://127\.0\.0\.1:8000(/cds-services/\S+)")
A_YEAR_AHEAD = datetime.now(timezone.utc).replace(hour=9, minute=0, second=0, microsecond=0) + timedelta(days=365)
README_COMMANDS = COMMAND.findall((ROOT / "README.md").read_text()) + COMMAND.findall((ROOT / "docs" / "developer-guide.md").read_text())
NAMED = re.findall(r"`([a-z-]+)`", (ROOT / "README.md").read_text().split("The names:")[1].split("`cds-service examples list`")[0])


def test_the_readme_shows_a_command_for_every_hook():
    assert {path for _, path in README_COMMANDS} >= {
        "/cds-services/rls-iron-patient-view",
        "/cds-services/rls-iron-order-select",
        "/cds-services/rls-iron-order-sign",
    }


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from fastapi.testclient import TestClient

    app = make_app(tmp_path_factory.mktemp("readme"))
    app.state.runtime.clock = lambda: A_YEAR_AHEAD
    with TestClient(app) as test_client:
        yield test_client


def request_for(name: str) -> dict:
    result = CliRunner().invoke(cli, ["examples", "request", name, "--today", A_YEAR_AHEAD.date().isoformat()])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.parametrize(("name", "path"), README_COMMANDS)
def test_each_readme_command_gives_its_outcome_a_year_ahead(client, name, path):
    example = find_example_or_request(name)
    assert outcomes(client.post(path, json=request_for(name))) == sorted(example.expected_for("article"))


@pytest.mark.parametrize("name", NAMED)
def test_each_named_request_gives_its_outcome_a_year_ahead(client, name):
    example = find_example_or_request(name)
    service = {"patient-view": "rls-iron-patient-view", "order-select": "rls-iron-order-select", "order-sign": "rls-iron-order-sign"}[example.hook]
    got = outcomes(client.post(f"/cds-services/{service}", json=request_for(name)))
    assert got == sorted(example.expected_for("article"))
    outcome = name.split("-", 2)[-1] if name.startswith(("order-select-", "order-sign-")) else name
    if outcome in load_outcomes():  # a request named after an outcome gives that outcome
        assert outcome in got
