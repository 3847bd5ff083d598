"""`cds-service examples` commands."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `examples` command(s) to the CLI."""
