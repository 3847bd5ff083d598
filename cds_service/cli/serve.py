"""`cds-service serve`: run the HTTP service under uvicorn, its workers supervised (crash containment)."""

from __future__ import annotations

import multiprocessing
import os

import typer

# The service's own modules are imported inside each command, when it runs, so that
# `cds-service --help` and every other command start without loading the whole service.


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

        from cds_service.http.auth import StartupRefused, check_startup
        from cds_service.settings import get_settings

        settings = get_settings()
        host = host or settings.host
        port = port or settings.port
        workers = workers or settings.workers
        os.environ["CDS_HOST"] = host  # the app (and every worker) checks the address it really binds
        get_settings.cache_clear()
        settings = get_settings()
        try:
            check_startup(settings)
        except StartupRefused as exc:
            typer.echo(f"cds-service: refusing to start: {exc}", err=True)
            raise typer.Exit(2) from None
        if reload:
            uvicorn.run(
                "cds_service.asgi:app",
                host=host,
                port=port,
                reload=True,
                log_level=settings.log_level.lower(),
                factory=False,
                timeout_graceful_shutdown=settings.shutdown_grace_seconds,
            )
            return
        try:  # fail fast in the parent: a worker that cannot start would be restarted in a loop
            import cds_service.asgi  # noqa: F401 - builds the app the forked workers inherit
        except Exception as exc:
            typer.echo(f"cds-service: refusing to start: {exc}", err=True)
            raise typer.Exit(2) from None
        code = run_supervised(
            "cds_service.asgi:app",
            host=host,
            port=port,
            workers=max(1, workers),
            log_level=settings.log_level.lower(),
            timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        )
        if code:
            raise typer.Exit(code)


def run_supervised(app_path: str, *, host: str, port: int, workers: int, log_level: str, timeout_graceful_shutdown: float | None) -> int:
    """Run the workers under uvicorn's supervisor, also when there is only one.

    Why: a native crash (durable-rules is C) kills a worker, and only a parent process can
    start a new one. `uvicorn.run` supervises only from two workers up; here the parent binds the
    socket and uvicorn's `Multiprocess` replaces any worker that dies or stops answering its health
    ping (docs/engine.md). Returns the exit code: uvicorn's STARTUP_FAILURE when a worker could not
    start (the parent then stops instead of restarting in a loop), else 0.
    """
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    _fork_workers()
    config = uvicorn.Config(
        app_path,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,  # cds_service.access logs every request (JSON, request id, no PHI)
        timeout_graceful_shutdown=timeout_graceful_shutdown,
    )
    sock = config.bind_socket()
    supervisor = Multiprocess(config, sockets=[sock])
    try:
        supervisor.run()
    finally:
        sock.close()
    return STARTUP_FAILURE if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes) else 0


def _fork_workers() -> None:
    """Start workers by fork from the parent, which has already imported and built the app.

    Why: uvicorn spawns each worker as a fresh interpreter that imports and builds everything
    again, which would double the start-up and delay the replacement of a worker that crashed. A forked worker starts with the rules compiled and only runs the
    app's lifespan (decision-log start). The parent holds no thread, connection or event loop
    at that point (the database is first opened by a worker's lifespan). uvicorn takes its
    process context from `uvicorn._subprocess.spawn`; the version is pinned in pyproject.toml
    and tests/test_workers.py runs supervised workers, so a change there fails the tests.
    """
    from uvicorn import _subprocess

    _subprocess.spawn = multiprocessing.get_context("fork")
