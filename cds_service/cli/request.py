"""`cds-service request`: the CDS Hooks request an EHR would send for a FHIR Bundle (for curl and other tools)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

# The service's own modules are imported inside each command, when it runs, so that
# `cds-service --help` and every other command start without loading the whole service.


def register(app: typer.Typer) -> None:
    @app.command()
    def request(
        bundle: Path = typer.Argument(..., help="a FHIR Bundle (collection, transaction or searchset) holding the chart"),
        hook: str = typer.Option("patient-view", help="patient-view, order-select or order-sign"),
        patient: str = typer.Option(None, help="the patient in context (needed when the Bundle holds several)"),
        draft: list[Path] = typer.Option(None, help="draft order file (resource, Bundle or list) for order hooks; repeatable"),
        user: str = typer.Option("Practitioner/example", help="context.userId"),
        out: Path = typer.Option(None, help="write to this file instead of standard output"),
    ) -> None:
        """Print the CDS Hooks request for BUNDLE, prefetch filled by resource type under the discovery keys.

        POST it to a running service:
        curl -H 'Content-Type: application/json' -d @request.json http://127.0.0.1:8000/cds-services/rls-iron-patient-view
        """
        from cds_service.tooling.offline import InputError, load_json, read_drafts, request_from_bundle

        try:
            document = load_json(bundle)
            if document.get("resourceType") != "Bundle":
                raise InputError(f"{bundle}: expected a FHIR Bundle, found {document.get('resourceType') or 'no resourceType'}")
            drafts = [d for path in draft for d in read_drafts(load_json(path))] if draft else None
            built = request_from_bundle(document, hook, patient, drafts, user_id=user)
        except InputError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2)
        text = json.dumps(built, indent=2) + "\n"
        if out:
            out.write_text(text, encoding="utf-8")
            typer.echo(f"wrote {out}", err=True)
        else:
            typer.echo(text, nl=False)
