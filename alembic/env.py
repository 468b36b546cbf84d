"""Alembic environment: the URL comes from docvec's settings (one settings object for all)."""

from __future__ import annotations

from alembic import context
from app.config import get_settings
from app.db.models import Base
from app.db.session import make_engine, normalize_url

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    # app.db.migrate.upgrade() passes an explicit URL; the alembic CLI uses the settings.
    explicit = config.attributes.get("url")
    return normalize_url(explicit or get_settings().sqlalchemy_url)


def run_migrations_offline() -> None:
    context.configure(
        url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url())
    with engine.connect() as conn:
        # render_as_batch: SQLite cannot ALTER most things; batch mode rewrites tables there.
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
