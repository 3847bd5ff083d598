"""ASGI entry point for uvicorn: `cds_service.asgi:app`."""

from cds_service.app import create_app

app = create_app()
