"""Run Alembic migrations from code (the CLI, the API's start-up and tests use this)."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from alembic import command
from app.db.session import make_engine

#: alembic.ini at the repository root (docvec is installed editable, or from a full source tree).
ALEMBIC_INI = Path(__file__).resolve().parents[2] / "alembic.ini"


def _config(url: str) -> Config:
    cfg = Config(str(ALEMBIC_INI))
    cfg.attributes["url"] = url
    return cfg


def upgrade(url: str) -> None:
    """Migrate the database at ``url`` to the newest revision (no-op when already there)."""
    if is_current(url):
        return
    command.upgrade(_config(url), "head")


def is_current(url: str) -> bool:
    """True if the database at ``url`` is at the newest migration."""
    head = ScriptDirectory.from_config(_config(url)).get_current_head()
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision() == head
    finally:
        engine.dispose()
