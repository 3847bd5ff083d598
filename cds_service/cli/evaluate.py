"""`cds-service evaluate`: run the pipeline on a file, offline, and print the cards."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from cds_service.offline import InputError, evaluate_document, load_json


def _parse_now(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InputError(f"--now must be an ISO date or date-time, not {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def register(app: typer.Typer) -> None:
    @app.command()
    def evaluate(
        file: Path = typer.Argument(..., help="a CDS Hooks request or a FHIR Bundle (JSON)"),
        hook: str = typer.Option(None, help="patient-view, order-select or order-sign (for a Bundle)"),
        patient: str = typer.Option(None, help="patient id (for a Bundle with several patients)"),
        profile: str = typer.Option(None, help="rule profile (article, aasm-2024)"),
        now: str = typer.Option(None, help="evaluate as of this date (ISO 8601)"),
        as_json: bool = typer.Option(False, "--json", help="print the raw CDS Hooks response"),
        explain: bool = typer.Option(False, help="print the decision trace"),
    ) -> None:
        """Evaluate a request or Bundle in-process and print the cards."""
        from cds_service.runtime import build_runtime
        from cds_service.settings import Settings

        console = Console()
        try:
            runtime = build_runtime(Settings(auth_mode="off"))
            evaluation = evaluate_document(runtime, load_json(file), hook=hook, patient_id=patient, profile=profile, now=_parse_now(now))
        except InputError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2)
        if as_json:
            body = {"cards": [c.model_dump(exclude_none=True) for c in evaluation.cards]}
            if explain:
                body["trace"] = evaluation.trace()
            typer.echo(json.dumps(body, indent=2))
            return
        table = Table(title=f"{evaluation.service.id}: {len(evaluation.cards)} card(s)")
        for column in ("indicator", "outcome", "summary"):
            table.add_column(column)
        for card in evaluation.cards:
            table.add_row(card.indicator, card.source.topic.code if card.source.topic else "", card.summary)
        console.print(table)
        if explain:
            trace = evaluation.trace()
            console.print("[bold]Fired rules[/bold]")
            for fired in trace["fired"]:
                console.print(f"  {fired['rule']} -> {fired['outcome']}  facts: {fired['facts']}")
            console.print("[bold]Silent rules[/bold]")
            for silent in trace["silent"]:
                console.print(f"  {silent['rule']}: {silent['why']}")
            console.print("[bold]Excluded resources[/bold]")
            for excluded in trace["excluded"]:
                console.print(f"  {excluded['resource']}: {excluded['reason']}")
            for note in trace["notes"]:
                console.print(f"  note: {note}")
