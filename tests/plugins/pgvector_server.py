"""A real PostgreSQL with pgvector for the test session, from the PyPI package ``pgserver``.

Register with ``pytest_plugins = ["tests.plugins.pgvector_server"]`` in the top conftest. Fixtures:

- ``pgvector_server`` (session): the running ``pgserver.PostgresServer`` (``.psql(sql)``,
  ``.get_uri()``).
- ``pgvector_url`` (session): SQLAlchemy URL (``postgresql+psycopg://``, Unix socket) of its
  ``postgres`` database, where the ``vector`` extension already exists.
- ``fresh_pgvector_table`` (function): a table name no other test uses; the table is dropped after.
- ``pgvector_database_url`` (function): a new empty database with ``vector``; dropped after.

The server is started only when a test asks for one of these, listens on a Unix socket inside its
data folder (no TCP port, so no clash with a system PostgreSQL on 5432) and is stopped at session
end.

Running as root: PostgreSQL refuses to run as root, so pgserver itself creates a system user
``pgserver`` (``useradd``), runs ``initdb``/``pg_ctl`` as that user, and adds ``o+rx`` to every
folder above the data folder and above its bundled binaries so that user can reach them. Nothing
else is needed here; the socket is reachable by root and by the test's subprocesses.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pgserver import PostgresServer
    from sqlalchemy.engine import Engine


def _sqlalchemy_url(uri: str) -> str:
    """pgserver's ``postgresql://postgres:@/db?host=/sock`` with the psycopg 3 driver named."""
    return uri.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture(scope="session")
def pgvector_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A PostgreSQL 16 + pgvector server in a temporary folder, for the whole session."""
    # platformdirs warns (RuntimeDirWarning) when XDG_RUNTIME_DIR is unset, as under root in a
    # container; pgserver then keeps its inter-process lock file in /tmp/runtime-<uid>: fine.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        # Not under pytest's basetemp: pgserver runs PostgreSQL as another user and opens the
        # folders above its data dir to it, but any later pytest session on this machine resets
        # /tmp/pytest-of-<user> to 0700, which cut a running server off from its own files.
        root = Path(tempfile.mkdtemp(prefix="docvec-pgvector-"))
        server = pgserver.get_server(root / "pgdata", cleanup_mode="stop")
    try:
        server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pgvector_url(pgvector_server: PostgresServer) -> str:
    """SQLAlchemy URL of the pgvector server's ``postgres`` database (``vector`` installed)."""
    return _sqlalchemy_url(pgvector_server.get_uri())


@pytest.fixture(scope="session")
def _pgvector_admin(pgvector_url: str) -> Iterator[Engine]:
    from sqlalchemy import create_engine

    engine = create_engine(pgvector_url, isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def fresh_pgvector_table(_pgvector_admin: Engine) -> Iterator[str]:
    """A table name unique to this test, in ``pgvector_url``'s database; dropped afterwards."""
    from sqlalchemy import text

    name = f"t_{uuid.uuid4().hex[:16]}"
    yield name
    with _pgvector_admin.connect() as conn:
        conn.execute(text(f'DROP TABLE IF EXISTS "{name}"'))


@pytest.fixture
def pgvector_database_url(
    pgvector_server: PostgresServer, _pgvector_admin: Engine
) -> Iterator[str]:
    """SQLAlchemy URL of a new, empty database on the pgvector server (``vector`` installed)."""
    from sqlalchemy import create_engine, text

    name = f"docvec_test_{uuid.uuid4().hex[:12]}"
    with _pgvector_admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = _sqlalchemy_url(pgvector_server.get_uri(database=name))
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
    finally:
        engine.dispose()
    try:
        yield url
    finally:
        with _pgvector_admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
