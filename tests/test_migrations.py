"""The schema comes only from Alembic; the migrations match the models on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from app.db import migrate
from app.db.models import Base
from app.db.session import make_engine


def _assert_matches_models(url: str) -> None:
    migrate.upgrade(url)
    assert migrate.is_current(url)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            assert diff == [], f"models and migrations differ: {diff}"
            tables = set(inspect(conn).get_table_names())
        assert {"projects", "documents", "document_chunks", "vectorization_attempts"} <= tables
    finally:
        engine.dispose()
    migrate.upgrade(url)  # idempotent


def test_sqlite(tmp_path: Path) -> None:
    _assert_matches_models(f"sqlite:///{tmp_path / 'db.sqlite'}")


def test_postgresql(pg_database_url: str) -> None:
    _assert_matches_models(pg_database_url)
