"""The migrations create exactly the tables the code writes (models and migrations stay in step)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from cds_service.audit import Store
from cds_service.audit.tables import metadata
from tests.test_audit_support import db_url  # noqa: F401


def test_migrations_match_the_models_and_run_twice(db_url):
    store = Store(db_url)
    try:
        store.migrate()
        store.migrate()  # start-up runs it every time: a no-op once at head
        with store.engine.connect() as connection:
            diffs = compare_metadata(MigrationContext.configure(connection), metadata)
        assert diffs == []
        assert {"decisions", "decision_cards", "decision_rules", "feedback", "alembic_version"} <= set(store.table_names())
    finally:
        store.dispose()


def test_the_sqlite_database_uses_wal_and_its_directory_is_created(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'nested' / 'var' / 'decisions.db'}")
    try:
        store.migrate()
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert (tmp_path / "nested" / "var" / "decisions.db").exists()
    finally:
        store.dispose()
