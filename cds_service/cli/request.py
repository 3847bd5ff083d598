"""`cds-service request` commands."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `request` command(s) to the CLI."""
