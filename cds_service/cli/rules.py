"""`cds-service rules lint|test|catalog`: the auditors' tools for the rule files."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import typer

# The service's own modules are imported inside each command, when it runs, so that
# `cds-service --help` and every other command start without loading the whole service.


rules_app = typer.Typer(help="Check, test and document the rule files in rules/.", no_args_is_help=True)


@rules_app.command()
def lint(
    rules_dir: Path = typer.Option(None, "--rules-dir", help="rules directory (default: the project's rules/)"),
    strict: bool = typer.Option(False, help="treat warnings (e.g. a rule without a test case) as errors"),
) -> None:
    """Check every rule file: schema, citations, names, reachability, duplicate ids, test cases."""
    from cds_service.engine.ruleset import RULES_DIR, RuleFileError
    from cds_service.tooling.lint import lint as run_lint
    from cds_service.tooling.ruletests import report

    try:
        report = run_lint(rules_dir or RULES_DIR)
    except RuleFileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1)
    for finding in report.findings:
        typer.echo(str(finding), err=finding.level == "error")
    failed = bool(report.errors) or (strict and bool(report.warnings))
    typer.echo(f"{len(report.errors)} error(s), {len(report.warnings)} warning(s)")
    if failed:
        raise typer.Exit(1)


@rules_app.command("test")
def test_rules(
    rules_dir: Path = typer.Option(None, "--rules-dir", help="rules directory (default: the project's rules/)"),
    engine: str = typer.Option(None, help="python or durable (default: CDS_RULE_ENGINE, else python)"),
) -> None:
    """Run every rule test case through the HTTP API in-process; fail on any failure or uncovered rule."""
    from cds_service.app import create_app
    from cds_service.engine.ruleset import RULES_DIR, RuleFileError, load_all_rulesets
    from cds_service.settings import Settings
    from cds_service.tooling.ruletests import RuleCaseError, coverage, load_cases, report, run_cases

    # imported here, its deprecation warning silenced: Starlette's test client warns on import
    # about its HTTP library, which says nothing about the rules
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    directory = rules_dir or RULES_DIR
    try:
        cases = load_cases(directory)
    except (RuleCaseError, RuleFileError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1)
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(
            auth_mode="off",
            rules_dir=directory,
            rule_engine=engine,
            profiles=",".join(load_all_rulesets(directory)),  # every profile's cases, whatever discovery lists
            database_url=f"sqlite:///{scratch}/rules-test.db",
            log_level="ERROR",  # the in-process service's start-up warnings (auth off, development key) are not the rules'
        )
        app = create_app(settings)
        with TestClient(app) as client:
            results = run_cases(client, cases)
        uncovered = coverage(results, app.state.runtime.rulesets)
    typer.echo(f"engine {app.state.runtime.engine_name}: {len(cases)} case(s)")
    typer.echo(report(results, uncovered))
    if any(not r.passed for r in results) or any(uncovered.values()):
        raise typer.Exit(1)


@rules_app.command()
def catalog(
    out: Path = typer.Option(None, "--out", help="write the Markdown catalog here (e.g. docs/rule-catalog.md)"),
    html: Path = typer.Option(None, "--html", help="write the self-contained HTML catalog here"),
    rules_dir: Path = typer.Option(None, "--rules-dir", help="rules directory (default: the project's rules/)"),
) -> None:
    """Render the rule catalog (Markdown and/or HTML); with no option, print the Markdown."""
    from cds_service.engine.ruleset import RULES_DIR
    from cds_service.tooling.catalog_build import build_catalog, render_markdown, write

    built = build_catalog(rules_dir or RULES_DIR)
    if not out and not html:
        typer.echo(render_markdown(built), nl=False)
        return
    write(built, out, html, emit=typer.echo)


def register(app: typer.Typer) -> None:
    """Add the `rules` command group to the CLI."""
    app.add_typer(rules_app, name="rules")
