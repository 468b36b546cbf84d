"""``PUT /documents/{id}/file``: a new version of a document's file, through the real app on
SQLite + Qdrant Edge and the real model, jobs run in-process by the pipeline function (as in
tests/api/test_api.py). README, "New versions of a document"."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.api.main import create_app
from app.config import ChunkingSettings, Settings
from app.db import migrate
from app.db.models import DocumentChunk, VectorizationAttempt
from app.pipeline.process import process_document
from app.runtime import Runtime

MakeClient = Callable[..., TestClient]

PARAGRAPHS = [
    f"Section {i} of the handbook: " + " ".join(f"s{i}t{j}" for j in range(36)) + "."
    for i in range(8)
]
V1 = "\n\n".join(PARAGRAPHS).encode()


@pytest.fixture(params=["sqlite", "postgresql"])
def make_client(
    request: pytest.FixtureRequest, tmp_path: Path, local_provider: Any
) -> Iterator[MakeClient]:
    """``make_client(run_jobs=True, **settings)``: the app on a fresh data folder — on SQLite,
    or on a fresh PostgreSQL database (row locks, its unique-constraint errors) — with chunks
    of one paragraph (so that an edit touches one chunk)."""
    opened: list[tuple[TestClient, Runtime]] = []
    database: dict[str, str] = (
        {"database_url": request.getfixturevalue("pg_database_url")}
        if request.param == "postgresql"
        else {}
    )

    def make(*, run_jobs: bool = True, **overrides: Any) -> TestClient:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            data_dir=tmp_path / "data",
            chunking=ChunkingSettings(chunk_size=300, chunk_overlap=0, min_chunk_size=16),
            **database,
            **overrides,
        )
        migrate.upgrade(settings.sqlalchemy_url)
        rt = Runtime(settings, provider=local_provider)

        def enqueue(doc_id: uuid.UUID, generation: int) -> None:
            if run_jobs:
                process_document(rt, doc_id, generation)

        client = TestClient(create_app(settings, runtime=rt, enqueue=enqueue))
        client.__enter__()
        client.rt = rt  # type: ignore[attr-defined]
        opened.append((client, rt))
        return client

    yield make
    for client, rt in opened:
        client.__exit__(None, None, None)
        rt.close()


def _project(client: TestClient, name: str) -> str:
    r = client.post("/projects", json={"name": name})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _upload(client: TestClient, pid: str, name: str, body: bytes) -> str:
    r = client.post(f"/projects/{pid}/documents", files=[("files", (name, body, "text/markdown"))])
    assert r.status_code == 202, r.text
    return str(r.json()["documents"][0]["id"])


def _put(client: TestClient, doc: str, name: str, body: bytes, ctype: str = "text/markdown") -> Any:
    return client.put(f"/documents/{doc}/file", files=[("file", (name, body, ctype))])


def _files(client: TestClient) -> set[str]:
    root = client.rt.storage.root  # type: ignore[attr-defined]
    return {p.name for p in Path(root).rglob("*") if p.is_file() and not p.name.startswith(".")}


def test_a_new_version_replaces_the_document_in_place(make_client: MakeClient) -> None:
    client = make_client()
    rt: Runtime = client.rt  # type: ignore[attr-defined]
    pid = _project(client, "handbook")
    doc = _upload(client, pid, "handbook.md", V1)
    v1 = client.get(f"/documents/{doc}").json()
    assert v1["status"] == "vectorized" and v1["chunk_count"] == len(PARAGRAPHS)
    # The same bytes in another project share the stored file (content-addressed).
    other_pid = _project(client, "mirror")
    _upload(client, other_pid, "copy.md", V1)
    files_before = _files(client)

    edited = list(PARAGRAPHS)
    edited[3] = "Section 3 now says the office opens at nine " + " ".join(
        f"n3t{j}" for j in range(30)
    )
    edited[3] += "."
    r = _put(client, doc, "handbook.md", "\n\n".join(edited).encode())
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["id"] == doc and body["changed"] is True and body["queued"] == 1
    assert body["status_url"] == f"/documents/{doc}" and body["file_name"] == "handbook.md"
    v2 = client.get(f"/documents/{doc}").json()
    assert v2["status"] == "vectorized" and v2["generation"] == v1["generation"] + 1
    assert v2["sha256"] != v1["sha256"] and v2["chunk_count"] == len(PARAGRAPHS)
    assert [a["outcome"] for a in v2["attempts"]] == ["succeeded", "succeeded"]
    with rt.sessions() as s:
        usage = s.scalars(
            select(VectorizationAttempt.usage)
            .where(VectorizationAttempt.document_id == uuid.UUID(doc))
            .order_by(VectorizationAttempt.started_at.desc())
        ).first()
    assert usage is not None and (usage["inputs"], usage["reused"]) == (1, len(PARAGRAPHS) - 1)
    words = client.post(
        f"/projects/{pid}/search", json={"query": "s3t5 s3t6", "mode": "lexical"}
    ).json()["results"]
    assert words == []
    new = client.post(f"/projects/{pid}/search", json={"query": "n3t5", "mode": "lexical"})
    assert [h["document_id"] for h in new.json()["results"]] == [doc]
    # The old file is still the other project's document's: it stays; the new one is added.
    assert _files(client) > files_before

    # The same bytes again: nothing to do.
    r = _put(client, doc, "handbook.md", "\n\n".join(edited).encode())
    assert r.status_code == 202 and r.json()["changed"] is False and r.json()["queued"] == 0
    assert client.get(f"/documents/{doc}").json()["generation"] == v2["generation"]

    # A shorter version under another name: renamed, its chunks past the end gone everywhere.
    r = _put(client, doc, "handbook-2.md", "\n\n".join(edited[:2]).encode())
    assert r.status_code == 202 and r.json()["file_name"] == "handbook-2.md"
    v3 = client.get(f"/documents/{doc}").json()
    assert v3["status"] == "vectorized" and v3["chunk_count"] == 2
    chunks = client.get(f"/documents/{doc}/chunks").json()
    assert [c["chunk_index"] for c in chunks["items"]] == [0, 1]
    with rt.sessions() as s:
        rows = set(
            s.scalars(select(DocumentChunk.id).where(DocumentChunk.document_id == uuid.UUID(doc)))
        )
    assert rt.vector_store.point_ids(document_ids={uuid.UUID(doc)}) == rows and len(rows) == 2
    hits = client.post(f"/projects/{pid}/search", json={"query": "n3t5 s7t1", "mode": "lexical"})
    assert hits.json()["results"] == []
    # The previous version's file had no other document: it is gone.
    assert len(_files(client)) == len(files_before) + 1


def test_refusals(make_client: MakeClient) -> None:
    client = make_client(max_upload_bytes=20_000)
    pid = _project(client, "p")
    doc = _upload(client, pid, "a.md", V1)
    other = _upload(client, pid, "b.md", b"# B\n\nAnother document of the same project, short.\n")
    before = client.get(f"/documents/{doc}").json()

    missing = str(uuid.uuid4())
    r = _put(client, missing, "a.md", b"# new\n\ntext")
    assert r.status_code == 404 and r.json()["detail"] == f"document {missing} not found"
    # Another document's bytes: 409 naming it, nothing changed.
    r = _put(client, doc, "a.md", b"# B\n\nAnother document of the same project, short.\n")
    assert r.status_code == 409, r.text
    assert r.json()["document_id"] == other and other in r.json()["detail"]
    assert r.json()["detail"].count("b.md") == 1
    assert _put(client, doc, "a.md", b"").status_code == 422
    assert _put(client, doc, "a.md", b"# x\n\ny", ctype="text/" + "x" * 120).status_code == 422
    gif = b"GIF89a" + b"\x00" * 100
    r = _put(client, doc, "x.gif", gif, ctype="image/gif")
    assert r.status_code == 415 and "text/markdown" in r.json()["detail"]["supported_types"]
    r = _put(client, doc, "a.md", b"# big\n\n" + b"word " * 5_000)
    assert r.status_code == 413, r.text
    assert client.put(f"/documents/{doc}/file", files=[("other", ("a.md", b"x"))]).status_code == (
        422
    )
    after = client.get(f"/documents/{doc}").json()
    assert {k: after[k] for k in ("sha256", "generation", "status", "file_name")} == {
        k: before[k] for k in ("sha256", "generation", "status", "file_name")
    }


def test_a_failed_document_gets_a_good_version(make_client: MakeClient) -> None:
    client = make_client()
    pid = _project(client, "p")
    doc = _upload(client, pid, "notes.md", b"   \n\n \t \n")
    failed = client.get(f"/documents/{doc}").json()
    assert failed["status"] == "failed" and failed["error"]
    r = _put(client, doc, "notes.md", b"# Notes\n\nThe first real version of these notes.\n")
    assert r.status_code == 202, r.text
    now = client.get(f"/documents/{doc}").json()
    assert now["status"] == "vectorized" and now["error"] is None and now["failed_stage"] is None


def test_a_large_new_version_passes_the_body_limit(make_client: MakeClient) -> None:
    """Like uploads, a new version may be up to ``max_upload_bytes`` (not the 1 MiB of JSON
    routes, app/api/limits.py); not processed here (``run_jobs=False``)."""
    client = make_client(run_jobs=False)
    pid = _project(client, "p")
    doc = _upload(client, pid, "big.md", b"# small first\n\nversion one.\n")
    r = _put(client, doc, "big.md", b"# big\n\n" + b"lorem ipsum dolor " * 100_000)
    assert r.status_code == 202, r.text
    assert r.json()["size_bytes"] > 1024 * 1024 and r.json()["status"] == "pending"
