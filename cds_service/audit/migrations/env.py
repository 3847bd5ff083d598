"""Alembic environment for the decision log.

Run programmatically by `Store.migrate()` (a Config built in code, with an open connection in
`config.attributes["connection"]`), or by hand: `alembic -c cds_service/audit/alembic.ini upgrade head`
(the URL then comes from CDS_DATABASE_URL). Logging is left to the service: no fileConfig here.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from cds_service.audit.tables import metadata
from cds_service.settings import Settings

config = context.config


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url

    return Settings().database_url


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(_url())
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
