"""What a newcomer meets first: one service per hook, errors that say what to fix, a card icon,
the command line's output, and a test run that says what it skipped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cds_service.app import create_app
from cds_service.cli import app as cli
from cds_service.settings import Settings
from cds_service.tooling import fixtures as fx
from tests.conftest import make_settings, outcomes

ROOT = Path(__file__).resolve().parents[1]
ARTICLE = ["rls-iron-order-select", "rls-iron-order-sign", "rls-iron-patient-view"]
AASM = ["rls-iron-aasm2024-order-select", "rls-iron-aasm2024-order-sign", "rls-iron-aasm2024-patient-view"]


def discovered(tmp_path: Path, **settings: object) -> list[dict]:
    with TestClient(create_app(make_settings(tmp_path, **settings))) as client:
        return client.get("/cds-services").json()["services"]


def test_discovery_lists_one_service_per_hook_by_default(tmp_path):
    assert Settings.model_fields["profiles"].default == "article"
    services = discovered(tmp_path, profiles=Settings.model_fields["profiles"].default)
    assert sorted(s["id"] for s in services) == ARTICLE
    assert sorted(s["hook"] for s in services) == ["order-select", "order-sign", "patient-view"]
    titles = {s["hook"]: s["title"] for s in services}
    assert titles["patient-view"] == "RLS iron work-up and escalation, when a chart is opened (Article profile)"
    assert all("((" not in t and "))" not in t for t in titles.values())


def test_both_profiles_are_an_explicit_choice(tmp_path):
    assert sorted(s["id"] for s in discovered(tmp_path, profiles="article,aasm-2024")) == sorted(ARTICLE + AASM)
    assert sorted(s["id"] for s in discovered(tmp_path, profiles="aasm-2024")) == AASM


def test_a_service_of_a_profile_not_listed_is_not_answered(tmp_path):
    with TestClient(create_app(make_settings(tmp_path, profiles="article"))) as client:
        response = client.post("/cds-services/rls-iron-aasm2024-patient-view", json=fx.cds_request([fx.condition("rls")]))
    assert response.status_code == 404


def test_cds_services_alone_decides_when_set(tmp_path):
    services = discovered(tmp_path, profiles="article", services="rls-iron-aasm2024-patient-view")
    assert [s["id"] for s in services] == ["rls-iron-aasm2024-patient-view"]


def test_an_unknown_profile_stops_start_up(tmp_path):
    with pytest.raises(ValueError, match="CDS_PROFILES names unknown profiles"):
        create_app(make_settings(tmp_path, profiles="article,aasm-2042"))


def test_the_command_line_reaches_every_profile_whatever_discovery_lists(tmp_path, monkeypatch):
    monkeypatch.setenv("CDS_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("CDS_PROFILES", "article")
    result = CliRunner().invoke(cli, ["evaluate", str(ROOT / "examples" / "bundles" / "rls-low-ferritin.json"), "--profile", "aasm-2024", "--now", "2026-11-26"])
    assert result.exit_code == 0, result.output
    assert "rls-iron-aasm2024-patient-view" in result.output


def test_cards_carry_an_icon_that_is_served(client):
    response = client.post("/cds-services/rls-iron-patient-view", json=fx.cds_request([fx.condition("rls"), fx.ferritin(32, days_ago=20), fx.tsat(15)]))
    assert outcomes(response) == ["start-oral-iron"]
    icon = response.json()["cards"][0]["source"]["icon"]
    assert icon == "http://testserver/static/icon.png"
    image = client.get("/static/icon.png")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png" and image.content[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("body", "content_type", "says"),
    [
        (b'{"hook": "patient-view"}', "text/plain", "Content-Type: application/json"),
        (b"{", "application/json", "not valid JSON"),
        (b"[]", "application/json", "one JSON object"),
    ],
)
def test_every_4xx_detail_is_one_sentence(client, body, content_type, says):
    response = client.post("/cds-services/rls-iron-patient-view", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 400
    answer = response.json()
    assert isinstance(answer["detail"], str) and says in answer["detail"] and "\n" not in answer["detail"]
    assert isinstance(answer["fields"], list)
    for path, status in (("/cds-services/nope", 404), ("/nowhere", 404)):
        other = client.post(path, json=fx.cds_request([fx.condition("rls")]))
        assert other.status_code == status and isinstance(other.json()["detail"], str)


def test_a_412_detail_is_a_sentence_and_the_keys_are_listed(client):
    request = fx.cds_request([fx.condition("rls")])
    del request["prefetch"]["labs"]
    response = client.post("/cds-services/rls-iron-patient-view", json=request)
    assert response.status_code == 412
    answer = response.json()
    assert answer["detail"] == "prefetch key labs could not be obtained: absent from prefetch and no fhirServer to fetch it from"
    assert answer["failures"] == [{"key": "labs", "reason": "no-fhir-server", "message": "absent from prefetch and no fhirServer to fetch it from"}]


def test_rules_test_prints_only_its_report(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cds_service", "rules", "test", "--engine", "python"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stderr and "warning" not in result.stderr.lower(), result.stderr
    assert "JWT verification is OFF" not in result.stdout + result.stderr


def test_piped_tables_keep_rule_ids_whole(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cds_service", "evaluate", "examples/bundles/rls-low-ferritin.json", "--now", "2026-11-26", "--explain"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert "add-iron-to-dopamine-agonist" in result.stdout, "a long rule id is printed whole, not cut at 80 columns"


def test_a_run_says_which_tests_it_skipped(tmp_path):
    test = tmp_path / "test_skips.py"
    test.write_text(
        "import pytest\n"
        "def test_pg():\n    pytest.skip('CDS_TEST_POSTGRES_URL is not set (see .ci/run)')\n"
        "def test_browser():\n    pytest.skip('Chromium and chromedriver not installed')\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.skip_summary", "--rootdir", str(tmp_path), str(test)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert "tests that did not run here" in result.stdout
    assert "1 PostgreSQL test(s) skipped: start one with `bash .ci/run postgres`" in result.stdout
    assert "1 browser (headless Chromium) test(s) skipped" in result.stdout


def test_help_loads_none_of_the_service():
    """`cds-service --help` imports the command line only: what makes it slow (the service, FastAPI,
    SQLAlchemy, pydantic) loads when a command runs."""
    code = (
        "import sys\n"
        "from cds_service.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('cds_service.runtime', 'cds_service.app', 'fastapi', 'sqlalchemy', 'pydantic', 'fhir_mappings') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in result.stdout, result.stdout[-500:] + result.stderr[-500:]
