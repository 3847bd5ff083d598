"""`cds-service` command line: serve the API, evaluate bundles offline, and the auditors' tools.

Each command imports the service's modules when it runs, so `cds-service --help` starts in a
fraction of a second (tests/test_first_hour.py holds it under 0.5 s).
"""

from __future__ import annotations

import typer

from cds_service.cli import decisions, evaluate, examples, fhir, request, rules, serve

app = typer.Typer(help="RLS iron CDS Hooks service", no_args_is_help=True, add_completion=False)
for module in (serve, evaluate, request, examples, fhir, rules, decisions):
    module.register(app)


def main() -> None:
    app()
