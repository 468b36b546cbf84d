"""End to end through the service: a real `docvec worker` process on the real Redis, a fresh
PostgreSQL database for SQL, pgvector (pgserver) as the shared vector store, and the API.

The API runs in this process (FastAPI's TestClient) with the real Celery enqueuer; the worker is a
separate OS process started with the `docvec worker` command a user would type.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.api.main import create_app
from app.config import Settings
from app.db.models import DocumentChunk
from app.runtime import Runtime
from tests.ops.harness import Proc

pytestmark = pytest.mark.slow

DOCS = [
    "text/md/en/fastapi__deployment__docker.md",
    "text/md/en/fastapi__python-types.md",
    "pdf/text/pdflatex-4-pages.pdf",
    "docx/handbook-1p.docx",
    "text/txt/rfc5322.txt",
    "pdf/encrypted/password.pdf",  # fails: encrypted
]


@pytest.fixture
def service_env(make_service_env) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return make_service_env()


@pytest.fixture
def worker(service_env: dict[str, str], spawn_worker) -> Proc:  # type: ignore[no-untyped-def]
    return spawn_worker(service_env)


@pytest.fixture
def client(
    service_env: dict[str, str],
    local_provider,
    monkeypatch,  # type: ignore[no-untyped-def]
) -> Iterator[TestClient]:
    for k, v in service_env.items():
        monkeypatch.setenv(k, v)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    rt = Runtime(settings, provider=local_provider)
    with TestClient(create_app(settings, runtime=rt)) as c:
        c.rt = rt  # type: ignore[attr-defined]
        yield c
    rt.close()


def _wait(client: TestClient, ids: list[str], proc: Proc, timeout: float = 300) -> dict[str, dict]:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while True:
        docs = {i: client.get(f"/documents/{i}").json() for i in ids}
        if all(d["status"] in ("vectorized", "failed") for d in docs.values()):
            return docs
        assert proc.alive(), f"the worker process died: {proc.tail()}"
        if time.monotonic() > deadline:
            pytest.fail(
                f"documents not done in {timeout}s: { {i: d['status'] for i, d in docs.items()} }"
            )
        time.sleep(0.5)


def _chunk_ids(rt: Runtime, doc_id: str) -> set[uuid.UUID]:
    with rt.sessions() as s:
        return set(
            s.scalars(
                select(DocumentChunk.id).where(DocumentChunk.document_id == uuid.UUID(doc_id))
            )
        )


def test_upload_process_search_revectorize(client: TestClient, worker: Proc, corpus: Path) -> None:
    rt: Runtime = client.rt  # type: ignore[attr-defined]
    ready = client.get("/readyz").json()
    assert ready["ready"], ready
    pid = client.post("/projects", json={"name": "svc"}).json()["id"]
    files = [
        ("files", (Path(p).name, (corpus / p).read_bytes(), "application/octet-stream"))
        for p in DOCS
    ]
    r = client.post(f"/projects/{pid}/documents", files=files)
    assert r.status_code == 202, r.text
    uploaded = r.json()["documents"]
    ids = [d["id"] for d in uploaded]
    docs = _wait(client, ids, worker)

    by_name = {d["file_name"]: d for d in docs.values()}
    assert by_name["password.pdf"]["status"] == "failed"
    assert "encrypted" in by_name["password.pdf"]["error"].lower()
    assert by_name["password.pdf"]["failed_stage"] == "extract"
    for name, d in by_name.items():
        if name == "password.pdf":
            continue
        assert d["status"] == "vectorized", (name, d["error"])
        assert d["attempts"][-1]["task_id"] and d["attempts"][-1]["worker"]
        # SQL and the vector store agree, point for point.
        assert rt.vector_store.point_ids(document_ids=[uuid.UUID(d["id"])]) == _chunk_ids(
            rt, d["id"]
        ), name
        assert len(_chunk_ids(rt, d["id"])) == d["chunk_count"] > 0
    assert by_name["pdflatex-4-pages.pdf"]["page_count"] == 4

    # A question taken from one document finds that document first.
    hits = client.post(
        f"/projects/{pid}/search",
        json={
            "query": "What is the syntax of an Internet message header field and its body?",
            "top_k": 5,
        },
    ).json()["results"]
    assert hits and hits[0]["file_name"] == "rfc5322.txt", hits[:2]

    # Re-vectorize twice: same point ids, no duplicates, counts unchanged.
    target = by_name["fastapi__deployment__docker.md"]
    before = rt.vector_store.point_ids(document_ids=[uuid.UUID(target["id"])])
    total = rt.vector_store.count()
    for _ in range(2):
        assert client.post(f"/documents/{target['id']}/revectorize").status_code == 202
    # The first request may be superseded by the second before it runs; one run wins.
    deadline = time.monotonic() + 120
    done = _wait(client, [target["id"]], worker)[target["id"]]
    while done["status"] != "vectorized" and time.monotonic() < deadline:
        time.sleep(0.5)
        done = _wait(client, [target["id"]], worker)[target["id"]]
    # The second click is coalesced when the first job still waits in the queue (+1), else it
    # supersedes it (+2).
    assert done["status"] == "vectorized"
    assert done["generation"] in (target["generation"] + 1, target["generation"] + 2)
    last = [a for a in done["attempts"] if a["generation"] == done["generation"]]
    assert [a["outcome"] for a in last] == ["succeeded"]
    assert rt.vector_store.point_ids(document_ids=[uuid.UUID(target["id"])]) == before
    assert _chunk_ids(rt, target["id"]) == before
    assert rt.vector_store.count() == total
    assert done["chunk_count"] == target["chunk_count"]
