"""`cds-service serve`: run the HTTP service under uvicorn."""

from __future__ import annotations

import os

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        host: str = typer.Option(None, help="bind address (default CDS_HOST or 127.0.0.1)"),
        port: int = typer.Option(None, help="port (default CDS_PORT or 8000)"),
        workers: int = typer.Option(None, help="worker processes (default CDS_WORKERS or 1)"),
        reload: bool = typer.Option(False, help="reload on code changes (development)"),
    ) -> None:
        """Start the CDS Hooks service."""
        import uvicorn

        from cds_service.settings import get_settings

        settings = get_settings()
        host = host or settings.host
        port = port or settings.port
        workers = workers or settings.workers
        os.environ["CDS_HOST"] = host  # the app (and every worker) checks the address it really binds
        get_settings.cache_clear()
        settings = get_settings()
        from cds_service.auth import StartupRefused, check_startup

        try:
            check_startup(settings)
        except StartupRefused as exc:
            typer.echo(f"cds-service: refusing to start: {exc}", err=True)
            raise typer.Exit(2) from None
        uvicorn.run(
            "cds_service.asgi:app",
            host=host,
            port=port,
            workers=workers,
            reload=reload,
            log_level=settings.log_level.lower(),
            factory=False,
            timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        )
