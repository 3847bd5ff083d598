"""`cds-service fhir-serve`: the sample patients as a read-only FHIR R4 server on loopback (development aid)."""

from __future__ import annotations

from pathlib import Path

import typer

# The service's own modules are imported inside each command, when it runs, so that
# `cds-service --help` and every other command start without loading the whole service.


def register(app: typer.Typer) -> None:
    @app.command("fhir-serve")
    def fhir_serve(
        bundles: list[Path] = typer.Argument(None, help="Bundles to serve as they are (default: every example, dates moved to today)"),
        host: str = typer.Option("127.0.0.1", help="loopback address to listen on"),
        port: int = typer.Option(8080, help="port"),
        today: str = typer.Option(None, help="the day the examples' dates are moved to, YYYY-MM-DD (default: today, UTC)"),
    ) -> None:
        """Serve the sample patients read-only as a FHIR R4 server at http://HOST:PORT/fhir.

        A development aid, never a production FHIR server: with `make serve`, the CDS Hooks
        sandbox (or any client) runs every example patient against it (docs/sandbox.md).
        """
        from datetime import date, datetime, timezone

        from cds_service.tooling.fhir_serve import BASE_PATH, load_samples, make_server

        try:
            day = date.fromisoformat(today) if today else datetime.now(timezone.utc).date()
            store = load_samples(list(bundles) if bundles else None, today=day)
            server = make_server(store, host, port)
        except (ValueError, OSError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2)
        count = sum(len(v) for v in store.resources.values())
        patients = len(store.resources.get("Patient", {}))
        typer.echo(f"FHIR R4 sample server (read-only, development only) on http://{host}:{port}{BASE_PATH}: {patients} patients, {count} resources")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
