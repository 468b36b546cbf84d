"""Schemathesis against the API's own OpenAPI schema, in-process: no request may end in a 5xx.

SQL is a real PostgreSQL (it refuses what SQLite accepts: NUL characters in text, integers past
64 bits), vectors go to Qdrant Edge, queries are embedded by the real model. Bounded:
a few hundred generated requests, valid ones and deliberately invalid ones, with and without an
API key, on random ids and on ids that exist.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from app import apikeys
from app.api.main import create_app
from app.config import Settings
from app.db import migrate
from app.runtime import Runtime

pytestmark = pytest.mark.slow

BOUNDED = settings(
    deadline=None,
    database=None,  # every run explores afresh; nothing is replayed from earlier sessions
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture
def api(
    tmp_path: Path, pg_database_url: str, local_provider: Any
) -> Iterator[tuple[FastAPI, dict[str, str]]]:
    """The app with one project, one document and an all-projects key; yields the app and
    ``{"project_id", "document_id", "key"}``."""
    settings_ = Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=tmp_path / "data",
        database_url=pg_database_url,
        max_upload_bytes=64 * 1024,
    )
    migrate.upgrade(pg_database_url)
    rt = Runtime(settings_, provider=local_provider)
    app = create_app(settings_, runtime=rt, enqueue=lambda *_: None)
    with TestClient(app) as client:  # runs the lifespan: app.state is ready for schemathesis
        pid = client.post("/projects", json={"name": "seed"}).json()["id"]
        r = client.post(
            f"/projects/{pid}/documents",
            files=[("files", ("seed.md", b"# Seed\n\nA seed document.\n", "text/markdown"))],
        )
        doc = r.json()["documents"][0]["id"]
        with rt.sessions() as s:
            _, secret = apikeys.create_key(s, name="fuzzer", all_projects=True)
            s.commit()
        yield app, {"project_id": pid, "document_id": doc, "key": secret}
    rt.close()


Seen = dict[str, set[int]]


def _run(
    strategy: Any, seen: Seen, *, examples: int, headers: dict[str, str] | None = None
) -> None:
    @settings(BOUNDED, max_examples=examples)
    @given(case=strategy)
    def check(case: Any) -> None:
        response = case.call_and_validate(headers=headers, checks=[not_a_server_error])
        seen.setdefault(f"{case.method} {case.path}", set()).add(response.status_code)

    check()


def test_no_server_errors(api: tuple[FastAPI, dict[str, str]]) -> None:
    app, seed = api
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    auth = {"Authorization": f"Bearer {seed['key']}"}
    seen: Seen = {}
    # Valid and invalid requests on random ids, with a valid key.
    positive = schema.as_strategy(generation_mode=GenerationMode.POSITIVE)
    negative = schema.as_strategy(generation_mode=GenerationMode.NEGATIVE)
    _run(positive, seen, examples=150, headers=auth)
    _run(negative, seen, examples=150, headers=auth)
    # Without a key: 401 everywhere but the health checks, never a 500.
    anonymous: Seen = {}
    _run(positive, anonymous, examples=40)
    assert {code for codes in anonymous.values() for code in codes} <= {200, 401, 404, 405, 422}
    # On ids that exist: the deep paths (listing, chunks, search, upload, re-vectorize).
    # Version 1 of the seed project: its first index version, made when its documents ran.
    known = {"project_id": seed["project_id"], "document_id": seed["document_id"], "version": 1}
    # Deletes last (the document's before the project's), so that the others find the seed.
    ordered = sorted(
        (result.ok() for result in schema.get_all_operations()),
        key=lambda op: (op.method.upper() == "DELETE", "project_id" in op.path),
    )
    for operation in ordered:
        params = {p.name for p in operation.path_parameters}
        if not params:
            continue
        path_parameters = {name: known[name] for name in params}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _run(
                operation.as_strategy(generation_mode=mode, path_parameters=path_parameters),
                seen,
                examples=15,
                headers=auth,
            )
    # Nothing skipped silently: every operation of the schema was called, and answered.
    operations = {f"{op.ok().method.upper()} {op.ok().path}" for op in schema.get_all_operations()}
    assert set(seen) == operations, operations - set(seen)
    codes = {code for codes in seen.values() for code in codes}
    assert {200, 201, 202, 204, 404, 422} <= codes, codes


def test_schema_documents_the_api_key() -> None:
    schema = create_app(
        Settings(_env_file=None, data_dir=Path("/nonexistent")),  # type: ignore[call-arg]
        enqueue=lambda *_: None,
    ).openapi()
    assert schema["components"]["securitySchemes"]["APIKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key made by `docvec keys create` (required once any key exists).",
    }
    secured = {
        path
        for path, methods in schema["paths"].items()
        for op in methods.values()
        if op.get("security")
    }
    assert secured == set(schema["paths"]) - {"/healthz", "/readyz"}
    assert uuid.UUID  # ids in paths are typed as UUIDs
