"""`cds-service examples`: the sample patients of examples/, what each should produce, and their requests."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cds_service.cli.output import output_console

# The service's own modules are imported inside each command, when it runs, so that
# `cds-service --help` and every other command start without loading the whole service.

examples_app = typer.Typer(help="Sample FHIR patients (examples/) and the outcome each should produce.", no_args_is_help=True)


@examples_app.command("list")
def list_examples(
    profile: str = typer.Option(None, help="show only this profile's expected outcomes (article, aasm-2024)"),
) -> None:
    """Print every example with the outcome(s) it should produce."""
    from rich.table import Table

    from cds_service.engine.ruleset import load_all_rulesets
    from cds_service.tooling.offline import (
        EXAMPLES_DIR,
        load_examples,
    )

    examples = load_examples()
    known = list(load_all_rulesets())  # the default profile first
    named = {p for e in examples for p in e.expected}
    profiles = [profile] if profile else [p for p in known if p in named] + sorted(named - set(known))
    table = Table(title=f"{len(examples)} examples in {EXAMPLES_DIR}", show_lines=False)
    table.add_column("example", style="bold", overflow="fold")
    table.add_column("hook")
    table.add_column("what it shows", overflow="fold")
    for name in profiles:
        table.add_column(f"expected ({name})", overflow="fold")
    for example in examples:
        cells = [", ".join(example.expected_for(p)) or "(no card)" for p in profiles]
        if not profile:
            # Show the other profiles only where they differ from the article's answer.
            cells = [cells[0]] + [c if p in example.expected else "=" for p, c in zip(profiles[1:], cells[1:])]
        table.add_row(example.file.name, example.hook, example.title, *cells)
    console = output_console()
    console.print(table)
    console.print(f"Every example is evaluated as of its `now` in examples/manifest.yaml (all: {examples[0].now.date()}).")


@examples_app.command("request")
def print_request(
    name: str = typer.Argument(..., help="a request name (start-oral-iron, order-sign-iron-overload-risk, ...) or an example name"),
    today: str = typer.Option(None, help="the day the request is for, YYYY-MM-DD (default: today, UTC)"),
) -> None:
    """Print an example's CDS Hooks request with its dates moved to today: POSTed now, it gives the
    example's outcome, whatever the date. Pipe it to curl: `... | curl -d @- ...`."""
    from datetime import date, datetime, timezone

    from cds_service.tooling.offline import InputError, find_example_or_request

    try:
        example = find_example_or_request(name)
        day = date.fromisoformat(today) if today else datetime.now(timezone.utc).date()
    except (InputError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    typer.echo(json.dumps(example.cds_request_on(day), indent=2))


@examples_app.command("requests")
def write_requests(
    out: Path = typer.Option(None, help="folder for the <outcome>.json request files (default: examples/requests)"),
) -> None:
    """(Re)write examples/requests/<outcome>.json: one ready-to-POST request per outcome."""
    from cds_service.tooling.offline import (
        EXAMPLES_DIR,
        load_examples,
    )

    out = out or EXAMPLES_DIR / "requests"
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for example in load_examples():
        if example.request_name:
            path = out / f"{example.request_name}.json"
            path.write_text(json.dumps(example.cds_request(), indent=2) + "\n", encoding="utf-8")
            written += 1
    typer.echo(f"wrote {written} requests to {out}")


@examples_app.command("check")
def check_examples(
    profile: str = typer.Option("article", help="rule profile to check (article, aasm-2024)"),
) -> None:
    """Run every example offline, as of its `now`, and compare with the manifest (exit 1 on a difference)."""
    from rich.table import Table

    from cds_service.runtime import build_runtime
    from cds_service.settings import Settings
    from cds_service.tooling.offline import (
        InputError,
        evaluate_request,
        load_examples,
    )

    runtime = build_runtime(Settings(auth_mode="off"))
    table = Table(title=f"examples, profile {profile}")
    for column in ("example", "expected", "got", ""):
        table.add_column(column, overflow="fold")
    failures = 0
    try:
        for example in load_examples():
            expected = sorted(example.expected_for(profile))
            try:
                evaluation = evaluate_request(runtime, example.cds_request(), profile=profile, now=example.now)
            except InputError as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(2)
            got = sorted(c["source"]["topic"]["code"] for c in evaluation.cards)
            ok = got == expected
            failures += not ok
            table.add_row(example.name, ", ".join(expected) or "-", ", ".join(got) or "-", "[green]ok[/green]" if ok else "[red]DIFFERS[/red]")
    finally:
        runtime.close()
    output_console().print(table)
    if failures:
        typer.echo(f"{failures} example(s) differ from examples/manifest.yaml", err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the `examples` command group to the CLI."""
    app.add_typer(examples_app, name="examples")
