"""Fixtures of the web console's tests: the API app in-process on the embedded defaults (SQLite,
Qdrant Edge, the real local model), jobs run by the pipeline function, and helpers that read a
page's CSRF token and make API keys the way ``docvec keys create`` does."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app import apikeys
from app.api.main import create_app
from app.config import Settings
from app.db import migrate
from app.db.models import Project
from app.pipeline.process import process_document
from app.runtime import Runtime

#: A broker URL on a loopback port nothing listens on (9: discard): publishing fails at once.
CLOSED_BROKER = "redis://127.0.0.1:9/0"
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


@pytest.fixture
def console(tmp_path: Path, local_provider: Any) -> Iterator[TestClient]:
    """A TestClient of the whole app; uploads are vectorized before the request returns.

    ``console.rt`` is its runtime.
    """
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=tmp_path / "data",
        max_upload_bytes=64 * 1024,
        # Nothing here publishes to the machine's Redis (index builds would): a closed port.
        broker_url=CLOSED_BROKER,
    )
    migrate.upgrade(settings.sqlalchemy_url)
    rt = Runtime(settings, provider=local_provider)

    def enqueue(doc_id: uuid.UUID, generation: int) -> None:
        process_document(rt, doc_id, generation)

    with TestClient(create_app(settings, runtime=rt, enqueue=enqueue)) as client:
        client.rt = rt  # type: ignore[attr-defined]
        yield client
    rt.close()


def csrf_of(client: TestClient, path: str = "/ui/projects") -> str:
    """The CSRF token a console page gives this client (setting its nonce cookie)."""
    page = client.get(path)
    assert page.status_code == 200, page.text
    found = CSRF_META.search(page.text)
    assert found, "no CSRF token in the page"
    return found.group(1)


def make_key(rt: Runtime, name: str, *, projects: list[uuid.UUID] | None = None) -> str:
    """A new API key's secret: for all projects, or scoped to ``projects``."""
    with rt.sessions() as s:
        scoped = [s.get(Project, p) for p in projects or []]
        _, secret = apikeys.create_key(
            s,
            name=name,
            projects=[p for p in scoped if p is not None],
            all_projects=projects is None,
        )
        s.commit()
    return secret


def create_project(client: TestClient, name: str, token: str) -> str:
    """Create a project through the console's form; its id."""
    r = client.post(
        "/ui/projects", data={"name": name, "csrf_token": token}, follow_redirects=False
    )
    assert r.status_code == 303, r.text
    return r.headers["location"].split("/")[3].split("?")[0]
