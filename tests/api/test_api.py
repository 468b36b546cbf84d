"""The HTTP API through FastAPI's TestClient, on SQLite + Qdrant local and the real model.

Jobs run in-process through the same pipeline function the Celery task calls (the enqueuer is the
test seam); the Celery path itself is covered by tests/test_service_e2e.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.main import create_app
from app.config import Settings
from app.pipeline.process import process_document
from app.runtime import Runtime


@pytest.fixture
def client(tmp_path: Path, local_provider) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")  # type: ignore[call-arg]
    from app.db import migrate

    migrate.upgrade(settings.sqlalchemy_url)
    rt = Runtime(settings, provider=local_provider)
    queued: list[tuple[uuid.UUID, int]] = []

    def enqueue(doc_id: uuid.UUID, generation: int) -> None:
        queued.append((doc_id, generation))
        process_document(rt, doc_id, generation)

    app = create_app(settings, runtime=rt, enqueue=enqueue)
    with TestClient(app) as c:
        c.queued = queued  # type: ignore[attr-defined]
        yield c
    rt.close()


def _project(client: TestClient, name: str = "docs") -> str:
    r = client.post("/projects", json={"name": name, "description": "test"})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _upload(client: TestClient, pid: str, *paths: Path) -> list[dict]:  # type: ignore[type-arg]
    files = [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]
    r = client.post(f"/projects/{pid}/documents", files=files)
    assert r.status_code == 202, r.text
    return list(r.json()["documents"])


def test_full_flow(client: TestClient, corpus: Path) -> None:
    pid = _project(client)
    assert client.post("/projects", json={"name": "docs"}).status_code == 409
    docs = _upload(
        client,
        pid,
        corpus / "text/md/en/fastapi__deployment__docker.md",
        corpus / "text/md/en/fastapi__python-types.md",
        corpus / "pdf/broken/truncated-pdflatex-4-pages.pdf",
    )
    assert [d["created"] for d in docs] == [True, True, True]
    good, other, bad = docs
    assert good["status_url"] == f"/documents/{good['id']}"

    # Same bytes again: the existing document comes back, nothing new is queued.
    n_queued = len(client.queued)  # type: ignore[attr-defined]
    again = _upload(client, pid, corpus / "text/md/en/fastapi__deployment__docker.md")
    assert again[0]["id"] == good["id"] and again[0]["created"] is False
    assert len(client.queued) == n_queued  # type: ignore[attr-defined]

    d = client.get(good["status_url"]).json()
    assert d["status"] == "vectorized" and d["chunk_count"] > 0
    assert d["embedding_model"] == "local:all-MiniLM-L6-v2" and d["vectorized_at"]
    assert d["attempts"][0]["outcome"] == "succeeded"
    b = client.get(f"/documents/{bad['id']}").json()
    assert b["status"] == "failed" and b["failed_stage"] == "extract" and b["error"]

    listed = client.get(f"/projects/{pid}/documents", params={"status": "failed"}).json()
    assert [x["id"] for x in listed["items"]] == [bad["id"]] and listed["total"] == 1
    page = client.get(f"/projects/{pid}/documents", params={"limit": 1, "offset": 1}).json()
    assert len(page["items"]) == 1 and page["total"] == 3

    chunks = client.get(f"/documents/{good['id']}/chunks").json()
    assert chunks["total"] == d["chunk_count"]
    assert [c["chunk_index"] for c in chunks["items"]] == list(range(chunks["total"]))

    r = client.post(
        f"/projects/{pid}/search",
        json={"query": "How do I build a Docker image for a FastAPI app?", "top_k": 3},
    )
    assert r.status_code == 200, r.text
    hits = r.json()["results"]
    assert hits and hits[0]["document_id"] == good["id"]
    assert hits[0]["file_name"] == "fastapi__deployment__docker.md"
    assert hits == sorted(hits, key=lambda h: -h["score"])
    assert r.json()["mode"] == "hybrid"  # the default
    assert hits[0]["dense_rank"] is not None or hits[0]["lexical_rank"] is not None
    none = client.post(
        f"/projects/{pid}/search",
        json={"query": "docker", "score_threshold": 0.99, "mode": "dense"},
    )
    assert none.json()["results"] == []
    # The threshold (a cosine) thins the dense side only: hybrid still has the word matches.
    fused = client.post(
        f"/projects/{pid}/search", json={"query": "docker", "score_threshold": 0.99}
    ).json()["results"]
    assert fused and all(h["dense_rank"] is None and h["lexical_rank"] for h in fused)
    words = client.post(f"/projects/{pid}/search", json={"query": "docker", "mode": "lexical"})
    assert [h["lexical_rank"] for h in words.json()["results"]] == [1, 2, 3, 4, 5]
    assert all("docker" in h["text"].lower() for h in words.json()["results"])
    refused = client.post(
        f"/projects/{pid}/search",
        json={"query": "docker", "mode": "lexical", "score_threshold": 0.5},
    )
    assert refused.status_code == 422 and "lexical mode" in refused.text

    detail = client.get(f"/projects/{pid}").json()
    assert detail["documents_by_status"] == {"vectorized": 2, "failed": 1}

    # Re-vectorize: same chunk count, generation bumped, a new succeeded attempt.
    r = client.post(f"/documents/{good['id']}/revectorize")
    assert r.status_code == 202
    d2 = client.get(good["status_url"]).json()
    assert d2["chunk_count"] == d["chunk_count"] and d2["generation"] == d["generation"] + 1
    assert [a["outcome"] for a in d2["attempts"]] == ["succeeded", "succeeded"]
    assert client.post(f"/projects/{pid}/revectorize").json()["queued"] == 3

    # Delete a document: its chunks and points go; search no longer returns it.
    assert client.delete(f"/documents/{other['id']}").status_code == 204
    assert client.get(f"/documents/{other['id']}").status_code == 404
    r = client.post(f"/projects/{pid}/search", json={"query": "Python type hints", "top_k": 10})
    assert all(h["document_id"] != other["id"] for h in r.json()["results"])

    assert client.delete(f"/projects/{pid}").status_code == 204
    assert client.get(f"/projects/{pid}").status_code == 404
    assert client.get(f"/documents/{good['id']}").status_code == 404


def test_projects_are_isolated_in_search(client: TestClient, corpus: Path) -> None:
    a, b = _project(client, "a"), _project(client, "b")
    _upload(client, a, corpus / "text/md/en/fastapi__deployment__docker.md")
    (doc_b,) = _upload(client, b, corpus / "text/md/en/fastapi__deployment__docker.md")
    hits = client.post(f"/projects/{a}/search", json={"query": "Docker", "top_k": 50}).json()
    assert hits["results"]
    assert all(h["document_id"] != doc_b["id"] for h in hits["results"])


def test_rejections(client: TestClient, tmp_path: Path) -> None:
    pid = _project(client)
    missing = str(uuid.uuid4())
    assert client.get(f"/projects/{missing}").status_code == 404
    assert client.get(f"/documents/{missing}").status_code == 404
    assert client.post(f"/projects/{missing}/search", json={"query": "x"}).status_code == 404
    r = client.post(f"/projects/{pid}/documents", files=[("files", ("e.txt", b"", "text/plain"))])
    assert r.status_code == 422
    # Images are read by OCR now; a text file named like one, or a GIF, is still refused.
    fake_png = b"Just some text under an image's name.\n" * 5
    r = client.post(
        f"/projects/{pid}/documents", files=[("files", ("x.png", fake_png, "image/png"))]
    )
    assert r.status_code == 415
    assert "application/pdf" in r.json()["detail"]["supported_types"]
    assert "image/png" in r.json()["detail"]["supported_types"]
    gif = b"GIF89a" + b"\x00" * 100
    r = client.post(f"/projects/{pid}/documents", files=[("files", ("x.gif", gif, "image/gif"))])
    assert r.status_code == 415
    assert (
        client.post(f"/projects/{pid}/search", json={"query": "x", "top_k": 0}).status_code == 422
    )
    assert client.get("/projects", params={"limit": 10_000}).status_code == 422


def test_health_and_docs(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    body = r.json()
    assert r.status_code == 200, body
    assert body["checks"]["database"]["ok"] and body["checks"]["vector_store"]["ok"]
    assert body["checks"]["embedding_provider"]["dimension"] == 384
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert "/projects/{project_id}/documents" in paths and "/projects/{project_id}/search" in paths
