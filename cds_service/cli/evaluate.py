"""`cds-service evaluate`: run the pipeline on a file, offline, and print the cards and why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from cds_service.cli.output import output_console

# The service's own modules are imported inside each command, when it runs, so that
# `cds-service --help` and every other command start without loading the whole service.

INDICATOR_STYLE = {"info": "blue", "warning": "yellow", "critical": "bold red"}


def _facts_text(facts: dict[str, list[str]]) -> str:
    """`ferritin: Observation/obs-1` lines: which resources each matched fact came from."""
    return "\n".join(f"{fact}: {', '.join(sources) or '-'}" for fact, sources in facts.items()) or "-"


def why_silent(why: str) -> str:
    """A silent rule's why as a reader takes it: a reason as it is, an unmet condition as a need
    (`oral_iron.active is false` alone would read as a statement about the patient)."""
    from cds_service.engine import SILENCING_REASONS

    return why if why.startswith(SILENCING_REASONS) else f"needs {why}, which does not hold"


def print_cards(console: Console, evaluation: Any) -> None:
    from rich.table import Table

    table = Table(title=f"{evaluation.service.id} ({evaluation.service.profile}), as of {evaluation.now.date()}: {len(evaluation.cards)} card(s)")
    for column in ("indicator", "outcome", "summary", "suggestions"):
        table.add_column(column, overflow="fold")
    for card in evaluation.cards:
        indicator = card["indicator"]
        style = INDICATOR_STYLE.get(indicator, "")
        table.add_row(
            f"[{style}]{indicator}[/{style}]" if style else indicator,
            card["source"]["topic"]["code"],
            card["summary"],
            "\n".join(s["label"] for s in card.get("suggestions", [])) or "-",
        )
    console.print(table)
    if not evaluation.cards:
        console.print("No card: nothing to advise for this chart (see --explain for why).")


def _fields_text(fields: dict[str, Any]) -> str:
    return ", ".join(f"{name}={json.dumps(value)}" for name, value in fields.items() if value is not None)


def print_trace(console: Console, trace: dict[str, Any], facts: dict[str, dict[str, Any]] | None = None) -> None:
    """The decision trace as tables: facts, fired rules, silent rules, excluded resources, notes."""
    from rich.table import Table

    console.print(f"[bold]Decision trace[/bold] {trace['decision_id']}  engine {trace['engine']}, rule set {trace['ruleset_version']}")
    if facts:
        table = Table(title="Facts the rules saw", title_justify="left")
        table.add_column("fact")
        table.add_column("fields", overflow="fold")
        for name, fields in facts.items():
            table.add_row(name, _fields_text(fields))
        console.print(table)
    fired = Table(title="Fired rules", title_justify="left")
    for column in ("rule", "outcome", "facts used (resources)"):
        fired.add_column(column, overflow="fold")
    for item in trace["fired"]:
        fired.add_row(item["rule"], item["outcome"], _facts_text(item.get("facts", {})))
    console.print(fired if trace["fired"] else "[bold]Fired rules[/bold]: none")
    silent = Table(title="Silent rules", title_justify="left")
    for column in ("rule", "why silent"):
        silent.add_column(column, overflow="fold")
    for item in trace["silent"]:
        silent.add_row(item["rule"], why_silent(str(item["why"])))
    console.print(silent if trace["silent"] else "[bold]Silent rules[/bold]: none")
    excluded = Table(title="Excluded resources", title_justify="left")
    for column in ("resource", "reason"):
        excluded.add_column(column, overflow="fold")
    for item in trace["excluded"]:
        excluded.add_row(item["resource"], item["reason"])
    console.print(excluded if trace["excluded"] else "[bold]Excluded resources[/bold]: none")
    if trace.get("unreadable"):
        unreadable = Table(title="Unreadable resources (their fact is unknown)", title_justify="left")
        for column in ("resource", "fact", "element"):
            unreadable.add_column(column, overflow="fold")
        for item in trace["unreadable"]:
            unreadable.add_row(item["resource"], item["fact"], item["element"])
        console.print(unreadable)
    if trace.get("unknown"):
        console.print(f"[bold]Unknown facts[/bold] (data could not be obtained or read): {', '.join(trace['unknown'])}")
    if trace.get("withheld"):
        console.print(f"[bold]Withheld[/bold] (the answer depends on unknown data): {', '.join(trace['withheld'])}")
    for note in trace.get("notes", []):
        console.print(f"note: {note}")


def register(app: typer.Typer) -> None:
    @app.command()
    def evaluate(
        file: Path = typer.Argument(..., help="a CDS Hooks request, or a FHIR Bundle (collection, transaction or searchset)"),
        hook: str = typer.Option(None, help="for a Bundle: patient-view (default), order-select or order-sign"),
        patient: str = typer.Option(None, help="for a Bundle with several patients: the patient id"),
        profile: str = typer.Option(None, help="rule profile (article, aasm-2024) or service id; default article"),
        now: str = typer.Option(None, help="evaluate as of this date or date-time (ISO 8601, UTC); default now"),
        draft: list[Path] = typer.Option(None, help="draft order file (resource, Bundle or list) for order hooks; repeatable"),
        as_json: bool = typer.Option(False, "--json", help="print the CDS Hooks response as JSON (with the trace under --explain)"),
        explain: bool = typer.Option(False, "--explain", help="print the decision trace: fired rules, facts, silent rules, exclusions"),
        timeline: Path = typer.Option(None, "--timeline", help="also write the chart's timeline (labs, thresholds, iron courses, infusions) to this SVG file"),
    ) -> None:
        """Evaluate a chart or a request in-process (no server, no FHIR fetch) and print the cards.

        Exit codes: 0 evaluated (with or without cards), 2 bad input.
        """
        from cds_service.runtime import build_runtime
        from cds_service.settings import Settings
        from cds_service.tooling.offline import (
            InputError,
            as_request,
            evaluate_request,
            load_json,
            parse_now,
            read_drafts,
            response_body,
            validate_request,
        )

        try:
            when = parse_now(now)
            document = load_json(file)
            drafts = [d for path in draft for d in read_drafts(load_json(path))] if draft else None
            raw = as_request(document, hook, patient, drafts)
            validate_request(raw)  # bad input fails before the rules are compiled
            runtime = build_runtime(Settings(auth_mode="off"))
            try:
                evaluation = evaluate_request(runtime, raw, profile=profile, now=when or runtime.clock())
            finally:
                runtime.close()
        except InputError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2)
        if timeline:
            from cds_service.tooling.timeline import evaluation_svg

            timeline.write_text(evaluation_svg(evaluation), encoding="utf-8")
        if as_json:
            body = response_body(evaluation)
            if explain:
                body["trace"] = evaluation.trace()
                body["facts"] = evaluation.facts.to_engine()
            typer.echo(json.dumps(body, indent=2))
            return
        console = output_console()
        print_cards(console, evaluation)
        if explain:
            print_trace(console, evaluation.trace(), evaluation.facts.to_engine())
