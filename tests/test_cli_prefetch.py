"""`cds-service evaluate` treats absent prefetch keys as the service does: fetch, or refuse (412)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cds_service.cli import app
from cds_service.tooling import fixtures as fx
from tests.fhir_server import FhirTestServer

runner = CliRunner()
NOW = "2026-11-26T09:00:00+00:00"


def _write(tmp_path: Path, request: dict) -> Path:
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request), encoding="utf-8")
    return path


def test_absent_labs_are_fetched_from_the_fhir_server(tmp_path: Path) -> None:
    with FhirTestServer([fx.patient(), fx.ferritin(32, days_ago=20)]) as server:
        request = fx.cds_request([fx.condition("rls")], fhir_server=server.url)
        request["prefetch"].pop("labs")
        result = runner.invoke(app, ["evaluate", str(_write(tmp_path, request)), "--now", NOW, "--json"])
        assert result.exit_code == 0, result.output
        assert [c["source"]["topic"]["code"] for c in json.loads(result.output)["cards"]] == ["start-oral-iron"]
        assert server.requests_for("Observation"), "the labs query was not sent"


def test_absent_keys_without_a_fhir_server_are_bad_input(tmp_path: Path) -> None:
    request = fx.cds_request([fx.condition("rls"), fx.ferritin(32, days_ago=20)])
    request["prefetch"].pop("labs")
    result = runner.invoke(app, ["evaluate", str(_write(tmp_path, request)), "--now", NOW])
    assert result.exit_code == 2
    assert "412" in result.output and "labs" in result.output


def test_the_trace_names_the_keys_fetched_from_the_fhir_server(tmp_path: Path) -> None:
    with FhirTestServer([fx.patient(), fx.ferritin(32, days_ago=20)]) as server:
        request = fx.cds_request([fx.condition("rls")], fhir_server=server.url)
        request["prefetch"].pop("labs")
        request["prefetch"].pop("allergies")
        result = runner.invoke(app, ["evaluate", str(_write(tmp_path, request)), "--now", NOW, "--json", "--explain"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["trace"]["fetched"] == ["allergies", "labs"]
