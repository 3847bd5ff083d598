"""`cds-service decisions` commands."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `decisions` command(s) to the CLI."""
