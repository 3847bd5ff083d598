"""`cds-service` command line: serve the API, evaluate bundles offline, and the auditors' tools."""

from __future__ import annotations

import typer

from cds_service.cli import evaluate, serve

app = typer.Typer(help="RLS iron CDS Hooks service", no_args_is_help=True, add_completion=False)
serve.register(app)
evaluate.register(app)


def main() -> None:
    app()
