"""`cds-service` command line: serve the API, evaluate bundles offline, and the auditors' tools."""

from __future__ import annotations

import typer

from cds_service.cli import decisions, evaluate, examples, request, rules, serve

app = typer.Typer(help="RLS iron CDS Hooks service", no_args_is_help=True, add_completion=False)
for module in (serve, evaluate, request, examples, rules, decisions):
    module.register(app)


def main() -> None:
    app()
