"""The Dockerfile and compose.yaml, checked by reading them (`docker build` cannot run on these machines)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from cds_service.cli import app as cli_app

ROOT = Path(__file__).resolve().parents[1]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    logical: list[str] = []
    current = ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    pairs = []
    for line in logical:
        keyword, _, rest = line.strip().partition(" ")
        pairs.append((keyword.upper(), rest.strip()))
    return pairs


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            result.append([])
        result[-1].append((keyword, rest))
    return result


def exec_form(rest: str) -> list[str]:
    value = json.loads(rest)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), rest
    return value


def final() -> list[tuple[str, str]]:
    return stages()[-1]


def test_multi_stage_build_compiles_in_a_builder_and_runs_on_slim():
    all_stages = stages()
    assert len(all_stages) >= 2
    build_from = all_stages[0][0][1]
    assert build_from.startswith("python:3.11") and " AS " in build_from.upper()
    build_runs = " ".join(rest for keyword, rest in all_stages[0] if keyword == "RUN")
    assert "gcc" in build_runs, "durable-rules needs a C compiler in the build stage"
    assert "pip install" in build_runs
    runtime_from = final()[0][1].split()[0]
    assert runtime_from == "python:3.11-slim"
    runtime_runs = " ".join(rest for keyword, rest in final() if keyword == "RUN")
    assert "gcc" not in runtime_runs, "no compiler in the runtime image"
    copies = [rest for keyword, rest in final() if keyword == "COPY"]
    assert any(c.startswith("--from=") and "/opt/venv" in c for c in copies)


def test_runs_as_a_non_root_user():
    users = [rest for keyword, rest in final() if keyword == "USER"]
    assert users, "the runtime stage sets USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    runs = " ".join(rest for keyword, rest in final() if keyword == "RUN")
    if user.isdigit():
        assert f"--uid {user}" in runs, "the numeric user exists in the image"
    else:
        assert re.search(rf"useradd\b.*\b{re.escape(user)}\b", runs)
    # nothing runs as root after USER
    keywords = [keyword for keyword, _ in final()]
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")


def test_exposes_8000_with_a_python_healthcheck_on_healthz():
    exposed = [rest for keyword, rest in final() if keyword == "EXPOSE"]
    assert exposed and "8000" in exposed[-1].split()
    healthchecks = [rest for keyword, rest in final() if keyword == "HEALTHCHECK"]
    assert len(healthchecks) == 1
    options, _, command = healthchecks[0].partition("CMD")
    assert "--interval" in options and "--timeout" in options
    argv = exec_form(command.strip())
    assert argv[0] == "python", "slim has no curl: the healthcheck uses python"
    assert "/healthz" in argv[-1] and "8000" in argv[-1]
    compile(argv[-1], "<healthcheck>", "exec")  # the inline script is valid Python


def test_entry_point_serves_on_all_interfaces_with_two_workers():
    entrypoint = exec_form([rest for keyword, rest in final() if keyword == "ENTRYPOINT"][-1])
    cmd = exec_form([rest for keyword, rest in final() if keyword == "CMD"][-1])
    argv = entrypoint + cmd
    assert argv[:2] == ["cds-service", "serve"]
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    assert argv[argv.index("--workers") + 1] == "2"
    # the command exists with those options
    from typer.testing import CliRunner

    help_text = CliRunner().invoke(cli_app, ["serve", "--help"], env={"COLUMNS": "200"}).output
    assert "--host" in help_text and "--workers" in help_text


def test_image_holds_what_the_service_reads_at_run_time():
    copied = " ".join(rest for stage in stages() for keyword, rest in stage if keyword == "COPY")
    for path in ("pyproject.toml", "cds_service", "fhir_mappings", "rules", "examples"):
        assert path in copied, path
    env = " ".join(rest for keyword, rest in final() if keyword == "ENV")
    assert "CDS_MODE=production" in env
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for path in (".git", ".venv", "tests", "var"):
        assert path in ignored, path
    for needed in ("rules", "cds_service", "fhir_mappings", "examples", "README.md", "pyproject.toml"):
        assert needed not in ignored, needed


def test_compose_runs_the_service_with_postgresql():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert set(services) == {"cds", "db"}
    db, cds = services["db"], services["cds"]
    assert db["image"].startswith("postgres:")
    assert "healthcheck" in db
    assert cds["build"] == "." and cds["depends_on"]["db"]["condition"] == "service_healthy"
    env = cds["environment"]
    assert env["CDS_DATABASE_URL"].startswith("postgresql+psycopg://") and "@db:5432/" in env["CDS_DATABASE_URL"]
    assert env["CDS_MODE"] == "production" and env["CDS_TRUSTED_CLIENTS"].startswith("/config/")
    assert any(v.endswith(":/config/trusted-clients.yaml:ro") for v in cds["volumes"])
    assert any(p.endswith(":8000") for p in cds["ports"])
    for key in ("CDS_DATABASE_URL", "CDS_TRUSTED_CLIENTS", "CDS_PUBLIC_URL", "CDS_PATIENT_KEY_SECRET"):
        name = key.removeprefix("CDS_").lower()
        from cds_service.settings import Settings

        assert name in Settings.model_fields, f"{key} is a real setting"


def test_default_trusted_clients_file_of_compose_is_valid():
    from cds_service.http.trusted_clients import load_trusted_clients

    clients = load_trusted_clients(ROOT / "examples" / "trusted-clients.sandbox.yaml")
    assert list(clients) == ["https://sandbox.cds-hooks.org"]
