"""`cds-service decisions show|list|purge` and `cds-service feedback report`: the auditors' reading tools.

They read the database the service writes (CDS_DATABASE_URL), print readably with rich, or as
JSON with `--json` for scripts.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from cds_service.cli.output import output_console

# The service's own modules are imported inside each command, when it runs, so that
# `cds-service --help` and every other command start without loading the whole service.

DURATION = re.compile(r"^(\d+)([dh])$")


def parse_since(value: str | None) -> datetime | None:
    """An ISO date or date-time (UTC when no offset), or a span back from now: `7d`, `12h`."""
    if not value:
        return None
    match = DURATION.match(value.strip())
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        return datetime.now(timezone.utc) - (timedelta(days=amount) if unit == "d" else timedelta(hours=amount))
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"expected an ISO date (2026-11-01), date-time or a span like 7d, not {value!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _store():
    from cds_service.audit import Store
    from cds_service.settings import Settings

    return Store(Settings().database_url)


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: the decision-log database could not be read ({type(exc).__name__}: {exc})", err=True)
    return typer.Exit(1)


def _dump(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def _facts_text(facts: dict[str, Any]) -> str:
    lines = []
    for fact, entry in facts.items():
        values = entry.get("values", {})
        parts = []
        for name, value in values.items():
            if isinstance(value, list):
                parts.append(f"{name} " + ", ".join(str(v) for v in value))
            else:
                parts.append(f"{name}={json.dumps(value) if not isinstance(value, str) else value}")
        sources = ", ".join(entry.get("sources", [])) or "no resource"
        lines.append(f"[bold]{fact}[/bold] ({sources}): " + "; ".join(parts))
    return "\n".join(lines)


def render_decision(console: Console, record: dict[str, Any]) -> None:
    """One decision record, the way an auditor reads it: what, on which facts, why not, what happened next."""
    from rich.panel import Panel
    from rich.table import Table

    head = [
        f"decision   {record['id']}",
        f"time       {record['created_at']}",
        f"service    {record['service_id']} ({record['hook']}), hookInstance {record['hook_instance']}",
        f"status     {record['status']} {record.get('error') or ''}".rstrip(),
        f"patient    key {record['patient_key'][:16]}…" + (f"  id {record['patient_id']}" if record.get("patient_id") else ""),
        f"rules      {record.get('ruleset_version')}  profile {record.get('profile')}  engine {record.get('engine')}",
        f"duration   {record['duration_ms']:.1f} ms",
    ]
    detail = record.get("detail") or {}
    if detail.get("as_of"):
        head.append(f"as of      {detail['as_of']}")
    console.print(Panel("\n".join(head), title="Decision", expand=False))
    cards = Table(title="Cards returned", show_lines=False)
    for column in ("uuid", "outcome", "indicator"):
        cards.add_column(column)
    for card in record.get("cards", []):
        cards.add_row(card["uuid"], card.get("outcome") or "", card.get("indicator") or "")
    console.print(cards if record.get("cards") else "[dim]No cards.[/dim]")
    if record.get("fired"):
        fired = Table(title="Fired rules and the facts each matched", show_lines=True)
        fired.add_column("rule")
        fired.add_column("outcome")
        fired.add_column("facts (banded)")
        for item in record["fired"]:
            fired.add_row(item["rule"], item["outcome"] + (f" ({item['reason']})" if item.get("reason") else ""), _facts_text(item.get("facts", {})))
        console.print(fired)
    for key, title, columns in (
        ("silent", "Silent rules (first unmet condition)", ("rule", "why")),
        ("excluded", "Excluded resources", ("resource", "reason")),
        ("unreadable", "Unreadable resources (their fact is unknown)", ("resource", "fact", "element")),
    ):
        if detail.get(key):
            table = Table(title=title)
            for column in columns:
                table.add_column(column)
            for item in detail[key]:
                table.add_row(*(item[column] for column in columns))
            console.print(table)
    for label in ("unknown", "withheld", "notes"):
        if detail.get(label):
            console.print(f"[bold]{label}[/bold]: " + "; ".join(detail[label]))
    if detail.get("error_detail") is not None:
        console.print(f"[bold]error detail[/bold]: {detail['error_detail']}")
    if record.get("feedback"):
        table = Table(title="Feedback on these cards")
        for column in ("received", "card", "outcome", "override reason", "accepted suggestions"):
            table.add_column(column)
        for item in record["feedback"]:
            reason = " ".join(str(x) for x in (item.get("override_code"), item.get("override_display")) if x)
            table.add_row(item["received_at"], item["card_uuid"], item["outcome"], reason, ", ".join(item.get("accepted_suggestions") or []))
        console.print(table)


NO_TIMELINE = (
    "this decision's record holds no timeline: lab values and dates are patient data, kept only when "
    "the decision log runs with CDS_DECISION_LOG_PHI=true"
)


def _write_timeline(record: dict[str, Any], path: Path) -> None:
    """The timeline the record kept (PHI mode), drawn as on the test page; exit 1 when it kept none."""
    from cds_service.tooling.timeline import render_svg
    from fhir_mappings.timeline import Timeline

    kept = (record.get("phi") or {}).get("timeline")
    if not kept:
        typer.echo(NO_TIMELINE, err=True)
        raise typer.Exit(1)
    path.write_text(render_svg(Timeline.from_json(kept)), encoding="utf-8")
    typer.echo(f"timeline of decision {record['id']} written to {path}", err=True)


def register(app: typer.Typer) -> None:
    """Add the `decisions` and `feedback` command groups to the CLI."""
    decisions = typer.Typer(help="Read and purge the decision log (CDS_DATABASE_URL).", no_args_is_help=True)
    feedback = typer.Typer(help="What clinicians did with the cards.", no_args_is_help=True)
    app.add_typer(decisions, name="decisions")
    app.add_typer(feedback, name="feedback")

    @decisions.command("show")
    def show(
        key: str = typer.Argument(..., help="a decision id (the response's extension decision-id) or a hookInstance"),
        as_json: bool = typer.Option(False, "--json", help="print the record(s) as JSON"),
        timeline: Path = typer.Option(None, "--timeline", help="also write the chart's timeline as SVG to this file (records kept with CDS_DECISION_LOG_PHI=true)"),
    ) -> None:
        """Print one decision: fired rules with their facts, silent rules, exclusions, cards, feedback."""
        try:
            records = _store().get(key)
        except Exception as exc:
            raise _fail(exc)
        if not records:
            typer.echo(f"no decision with id or hookInstance {key!r}", err=True)
            raise typer.Exit(1)
        if timeline is not None:
            _write_timeline(records[-1], timeline)
        if as_json:
            _dump(records[0] if len(records) == 1 else records)
            return
        console = output_console()
        for record in records:
            render_decision(console, record)

    @decisions.command("list")
    def list_(
        since: str = typer.Option(None, help="from this date or date-time (ISO, UTC), or a span back: 7d, 12h"),
        until: str = typer.Option(None, help="before this date or date-time"),
        outcome: str = typer.Option(None, help="only decisions that returned a card with this outcome code"),
        status: int = typer.Option(None, help="only decisions answered with this HTTP status (200, 412, 503...)"),
        limit: int = typer.Option(100, min=1, help="at most this many, newest first"),
        as_json: bool = typer.Option(False, "--json", help="print JSON"),
    ) -> None:
        """List decisions, newest first."""
        from rich.table import Table

        try:
            rows = _store().list(since=parse_since(since), until=parse_since(until), outcome=outcome, status=status, limit=limit)
        except typer.BadParameter:
            raise
        except Exception as exc:
            raise _fail(exc)
        if as_json:
            _dump(rows)
            return
        table = Table(title=f"{len(rows)} decision(s)")
        for column in ("time", "decision", "service", "status", "cards", "fired rules"):
            table.add_column(column)
        for row in rows:
            table.add_row(
                row["created_at"][:19], row["id"], row["service_id"],
                str(row["status"]) + (f" {row['error']}" if row.get("error") else ""),
                ", ".join(o or "" for o in row["outcomes"]) or "-", ", ".join(row["fired"]) or "-",
            )
        output_console().print(table)

    @decisions.command("purge")
    def purge(
        days: int = typer.Option(None, min=0, help="delete what is older than this many days (default CDS_RETENTION_DAYS)"),
        as_json: bool = typer.Option(False, "--json", help="print the counts as JSON"),
    ) -> None:
        """Delete decisions (with their cards and fired-rule rows) and feedback older than the retention."""
        from cds_service.settings import Settings

        keep = Settings().retention_days if days is None else days
        before = datetime.now(timezone.utc) - timedelta(days=keep)
        try:
            counts = _store().purge(before)
        except Exception as exc:
            raise _fail(exc)
        if as_json:
            _dump({"before": before.isoformat(), "deleted": counts})
            return
        typer.echo(f"deleted records older than {before.isoformat()} ({keep} days): " + ", ".join(f"{n} {name}" for name, n in counts.items()))

    @feedback.command("report")
    def report(
        since: str = typer.Option(None, help="from this date or date-time (ISO, UTC), or a span back: 30d"),
        as_json: bool = typer.Option(False, "--json", help="print JSON"),
    ) -> None:
        """Per outcome: cards returned, accepted, overridden, and override reasons."""
        from rich.table import Table

        try:
            data = _store().feedback_report(since=parse_since(since))
        except typer.BadParameter:
            raise
        except Exception as exc:
            raise _fail(exc)
        if as_json:
            _dump(data)
            return
        table = Table(title="Feedback per outcome" + (f" since {data['since']}" if data["since"] else ""), show_lines=True)
        for column in ("outcome", "cards", "accepted", "overridden", "overridden / feedback", "override reasons"):
            table.add_column(column)
        table.caption = "overridden / feedback: the share of the feedback received on this outcome's cards that overrode them (cards without feedback not counted)"
        rows = [*data["outcomes"], {**data["unlinked"], "outcome": "(unknown card uuid)", "cards": None, "override_rate": None}]
        for row in rows:
            if row["outcome"] == "(unknown card uuid)" and not row["feedback"]:
                continue
            reasons = "\n".join(f"{r['count']} x {r['code'] or '(no reason)'}" + (f" ({r['display']})" if r.get("display") else "") for r in row["override_reasons"])
            rate = f"{row['override_rate']:.0%}" if row.get("override_rate") is not None else "-"
            table.add_row(row["outcome"], "-" if row["cards"] is None else str(row["cards"]), str(row["accepted"]), str(row["overridden"]), rate, reasons)
        output_console().print(table)
