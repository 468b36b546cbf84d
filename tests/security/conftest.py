"""Fixtures of the security tests: the API in-process (SQLite + Qdrant Edge + the real model,
jobs run in-process through the pipeline function), with settings each test may adjust."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api.main import create_app
from app.config import Settings
from app.db import migrate
from app.pipeline.process import process_document
from app.runtime import Runtime

MakeClient = Callable[..., TestClient]


@pytest.fixture
def make_client(
    tmp_path: Path,
    local_provider: Any,
) -> Iterator[MakeClient]:
    """``make_client(**settings)``: a TestClient on a fresh data folder (the same one for every
    call in a test). Uploads are processed in-process unless ``run_jobs=False``. Qdrant's local
    mode opens its folder once per process, so a new client closes the previous one."""
    opened: list[tuple[TestClient, Runtime]] = []

    def close_all() -> None:
        while opened:
            client, rt = opened.pop()
            client.__exit__(None, None, None)
            rt.close()

    def make(*, run_jobs: bool = True, **overrides: Any) -> TestClient:
        close_all()
        settings = Settings(_env_file=None, data_dir=tmp_path / "data", **overrides)  # type: ignore[call-arg]
        migrate.upgrade(settings.sqlalchemy_url)
        rt = Runtime(settings, provider=local_provider)
        queued: list[tuple[uuid.UUID, int]] = []

        def enqueue(doc_id: uuid.UUID, generation: int) -> None:
            queued.append((doc_id, generation))
            if run_jobs:
                process_document(rt, doc_id, generation)

        client = TestClient(create_app(settings, runtime=rt, enqueue=enqueue))
        client.__enter__()
        client.queued = queued  # type: ignore[attr-defined]
        client.rt = rt  # type: ignore[attr-defined]
        opened.append((client, rt))
        return client

    yield make
    close_all()
