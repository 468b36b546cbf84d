"""Fixtures for tests that run docvec as a service: the environment of a fresh deployment (a new
PostgreSQL database, a pgvector table, a Redis DB number, a queue of its own) and real
`docvec worker` processes, stopped at the end of the test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.db import migrate
from tests.ops.harness import Proc, start_worker

EnvFactory = Callable[..., dict[str, str]]


@pytest.fixture
def make_service_env(
    tmp_path: Path, pg_database_url: str, pgvector_url: str, redis_url: str
) -> EnvFactory:
    """``make_service_env(**overrides)``: the DOCVEC_* environment of a fresh deployment,
    migrated; overrides are whole variable names (``DOCVEC_WORKER_CONCURRENCY="2"``)."""

    def make(**overrides: str) -> dict[str, str]:
        suffix = uuid.uuid4().hex[:8]
        env = {
            "DOCVEC_DATA_DIR": str(tmp_path / "data"),
            "DOCVEC_STORAGE_DIR": str(tmp_path / "files"),
            "DOCVEC_DATABASE_URL": pg_database_url,
            "DOCVEC_VECTOR_STORE": "pgvector",
            "DOCVEC_PGVECTOR_URL": pgvector_url,
            "DOCVEC_COLLECTION": f"chunks_{suffix}",
            "DOCVEC_BROKER_URL": redis_url,
            "DOCVEC_QUEUE": f"docvec_{suffix}",
            "DOCVEC_WORKER_CONCURRENCY": "1",
            "DOCVEC_WORKER_METRICS_PORT": "0",
            "DOCVEC_RETRY_BACKOFF_S": "[1, 2, 4]",
        }
        env.update(overrides)
        migrate.upgrade(pg_database_url)
        return env

    return make


@pytest.fixture
def spawn_worker(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """``spawn_worker(env, name="worker")``: a real `docvec worker` process."""
    procs: list[Proc] = []

    def spawn(env: dict[str, str], name: str = "worker") -> Proc:
        proc = start_worker({**os.environ, **env}, tmp_path, name)
        procs.append(proc)
        return proc

    yield spawn
    for p in procs:
        p.stop(timeout=30)
