"""Each embedding provider vectorizes real documents end to end.

1. ``openai`` through the service: a real ``docvec worker`` process on the real Redis, a fresh
   PostgreSQL database, pgvector (pgserver), the API in this process — and a loopback
   OpenAI-compatible server (``tests/embeddings/fakes.py``) that the worker reaches through the
   real ``openai`` SDK. Its vectors are a hashed bag of words, so search is meaningful.
2. ``ollama``, ``gemini`` and ``local`` in-process (SQLite + Qdrant Edge), each on a real
   corpus document through its real SDK (the local model for ``local``).
3. Switching the provider on an existing collection is refused with both sizes and the remedy.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from app import services
from app.api.main import create_app
from app.config import EmbeddingSettings, Settings
from app.db import migrate
from app.db.models import Document, DocumentChunk, VectorizationAttempt
from app.pipeline.process import process_document
from app.runtime import Runtime
from tests.embeddings.fakes import FakeGemini, FakeOllama, FakeOpenAI, FakeServer, openai_error
from tests.ops.harness import Proc

pytestmark = pytest.mark.slow

OPENAI_KEY = "sk-e2e-test-key-DO-NOT-LEAK-0987654321"
GEMINI_KEY = "AIzaE2eTestGeminiKey_DO-NOT-LEAK_12345"

DOCS = [
    "text/txt/rfc5322.txt",
    "text/md/en/fastapi__deployment__docker.md",
    "pdf/text/pdflatex-4-pages.pdf",
    "docx/handbook-1p.docx",
]


# ---- 1. openai through the service --------------------------------------------------------------
@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(random_delay_s=(0.0, 0.05)) as server:
        yield server


@pytest.fixture
def service_env(make_service_env, fake_openai: FakeOpenAI) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return make_service_env(  # type: ignore[no-any-return]
        DOCVEC_EMBEDDING__PROVIDER="openai",
        DOCVEC_EMBEDDING__MODEL="text-embedding-3-small",
        DOCVEC_EMBEDDING__BASE_URL=fake_openai.url + "/v1",
        DOCVEC_EMBEDDING__DIMENSIONS="512",
        DOCVEC_EMBEDDING__BATCH_SIZE="8",
        OPENAI_API_KEY=OPENAI_KEY,
    )


@pytest.fixture
def worker(service_env: dict[str, str], spawn_worker) -> Proc:  # type: ignore[no-untyped-def]
    return spawn_worker(service_env)


@pytest.fixture
def client(service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    for k, v in service_env.items():
        monkeypatch.setenv(k, v)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    rt = Runtime(settings)  # the configured provider: openai, at the fake
    with TestClient(create_app(settings, runtime=rt)) as c:
        c.rt = rt  # type: ignore[attr-defined]
        yield c
    rt.close()


def _wait(client: TestClient, ids: list[str], proc: Proc) -> dict[str, dict]:  # type: ignore[type-arg]
    deadline = time.monotonic() + 120
    while True:
        docs = {i: client.get(f"/documents/{i}").json() for i in ids}
        if all(d["status"] in ("vectorized", "failed") for d in docs.values()):
            return docs
        assert proc.alive(), f"the worker process died: {proc.tail()}"
        if time.monotonic() > deadline:
            pytest.fail(f"not done: { {i: d['status'] for i, d in docs.items()} }")
        time.sleep(0.3)


def test_openai_compatible_server_through_api_and_worker(
    client: TestClient,
    worker: Proc,
    fake_openai: FakeOpenAI,
    corpus: Path,
    tmp_path: Path,
) -> None:
    rt: Runtime = client.rt  # type: ignore[attr-defined]
    status = client.get("/status").json()
    openai = next(p for p in status["providers"] if p["provider"] == "openai")
    assert openai["available"] and openai["dimension"] == 512, openai
    fake_openai.requests.clear()  # the status probe came from this process, not the worker
    # The first batch of chunks is rate limited: the worker waits as told, then goes on. (Only a
    # batch of several inputs: one-input requests are queries or a worker's warm-up.)
    limited_reply = openai_error(
        429, "Rate limit reached", code="rate_limit_exceeded", headers={"retry-after": "1"}
    )
    limited_reply.match = lambda seen: len(seen.body["input"]) > 1
    fake_openai.push(limited_reply)

    pid = client.post("/projects", json={"name": "providers"}).json()["id"]
    files = [
        ("files", (Path(p).name, (corpus / p).read_bytes(), "application/octet-stream"))
        for p in DOCS
    ]
    r = client.post(f"/projects/{pid}/documents", files=files)
    assert r.status_code == 202, r.text
    ids = [d["id"] for d in r.json()["documents"]]
    docs = _wait(client, ids, worker)

    retries = 0
    for d in docs.values():
        assert d["status"] == "vectorized", (d["file_name"], d["error"])
        assert d["embedding_model"] == "openai:text-embedding-3-small"
        usage = d["attempts"][-1]["usage"]
        # Each distinct text is sent once: the repeats are shared, not embedded again.
        assert usage["inputs"] + usage["shared"] + usage["reused"] == d["chunk_count"] > 0
        assert usage["requests"] >= 1 and usage["tokens"] > 0  # tokens reported by the server
        retries += usage["retries"]
        assert rt.vector_store.point_ids(document_ids=[uuid.UUID(d["id"])]) == _chunk_ids(
            rt, d["id"]
        )
    assert retries >= 1  # the 429 was retried inside the call, not failed

    # Requests stayed within limits and carried the key in the header only.
    embeds = fake_openai.embed_requests
    assert all(len(q.body["input"]) <= 8 and q.body["dimensions"] == 512 for q in embeds)
    assert all(q.headers["authorization"] == f"Bearer {OPENAI_KEY}" for q in embeds)
    assert all(OPENAI_KEY.encode() not in q.raw and OPENAI_KEY not in q.path for q in embeds)
    # The rate-limited batch was sent again no sooner than Retry-After said.
    at = next(i for i, q in enumerate(embeds) if len(q.body["input"]) > 1)
    limited = embeds[at]
    again = next(q for q in embeds[at + 1 :] if q.body["input"] == limited.body["input"])
    assert again.at - limited.at >= 1.0

    # Search embeds the query through the same provider and finds the right document.
    hits = client.post(
        f"/projects/{pid}/search",
        json={"query": "syntax of an Internet message header field and its body", "top_k": 3},
    ).json()["results"]
    assert hits and hits[0]["file_name"] == "rfc5322.txt", hits[:2]

    # The key is nowhere in the database or the worker's log.
    with rt.engine.connect() as conn:
        for table in ("documents", "vectorization_attempts", "document_chunks"):
            rows = conn.execute(text(f"SELECT * FROM {table}")).all()
            assert OPENAI_KEY not in repr(rows)
    assert OPENAI_KEY not in (tmp_path / "worker.log").read_text(errors="replace")


def _chunk_ids(rt: Runtime, doc_id: str) -> set[uuid.UUID]:
    with rt.sessions() as s:
        return set(
            s.scalars(
                select(DocumentChunk.id).where(DocumentChunk.document_id == uuid.UUID(doc_id))
            )
        )


# ---- 2. every provider in-process ------------------------------------------------------------
CASES = {
    "openai": (FakeOpenAI, {"dimensions": 256}, "openai:text-embedding-3-small", 256),
    "ollama": (FakeOllama, {}, "ollama:nomic-embed-text", 768),
    "gemini": (FakeGemini, {"dimensions": 768}, "gemini:gemini-embedding-001", 768),
}


def _runtime(tmp_path: Path, embedding: EmbeddingSettings, **kw: object) -> Runtime:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, data_dir=tmp_path / "data", embedding=embedding
    )
    migrate.upgrade(settings.sqlalchemy_url)
    return Runtime(settings, **kw)  # type: ignore[arg-type]


def _add(rt: Runtime, path: Path) -> uuid.UUID:
    with rt.sessions() as s:
        project = services.get_or_create_project(s, name="p")
        r = services.add_document(
            s, project=project, storage=rt.storage, file_name=path.name, path=path
        )
        s.commit()
        return r.document.id


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)


@pytest.mark.parametrize("name", [*CASES, "local"])
def test_each_provider_vectorizes_a_real_document(
    name: str, tmp_path: Path, corpus: Path, keys: None, request: pytest.FixtureRequest
) -> None:
    doc_path = corpus / "text/md/en/fastapi__features.md"
    if name == "local":
        local = request.getfixturevalue("local_provider")
        rt = _runtime(tmp_path, EmbeddingSettings(), provider=local)
        server: FakeServer | None = None
        label, dim = "local:all-MiniLM-L6-v2", 384
    else:
        fake_cls, extra, label, dim = CASES[name]
        server = fake_cls().__enter__()
        rt = _runtime(
            tmp_path,
            EmbeddingSettings(provider=name, base_url=_base(name, server), **extra),  # type: ignore[arg-type]
        )
    try:
        doc_id = _add(rt, doc_path)
        result = process_document(rt, doc_id)
        assert result.outcome == "succeeded", result.error
        with rt.sessions() as s:
            doc = s.get(Document, doc_id)
            assert doc is not None and doc.embedding_model == label
            attempt = s.scalar(
                select(VectorizationAttempt).where(VectorizationAttempt.document_id == doc_id)
            )
            assert attempt is not None and attempt.usage is not None
            assert attempt.usage["inputs"] == doc.chunk_count == result.chunks > 0
        assert rt.provider.dimension == dim
        assert len(rt.vector_store.point_ids(document_ids=[doc_id])) == result.chunks
        with rt.sessions() as s:
            project = services.find_project(s, "p")
            hits = services.search(
                s,
                project=project,
                query="automatic interactive API documentation",
                provider=rt.provider,
                store=rt.vector_store,
                top_k=3,
            )
        assert hits and hits[0].document_id == doc_id
        if server is not None:
            assert server.embed_requests, "the SDK talked to the fake server"
    finally:
        rt.close()
        if server is not None:
            server.__exit__(None, None, None)


def _base(name: str, server: FakeServer) -> str:
    return server.url + "/v1" if name == "openai" else server.url


# ---- 3. switching provider on an existing collection -------------------------------------------
def test_switching_to_another_vector_size_is_refused_with_the_remedy(
    tmp_path: Path, corpus: Path, keys: None
) -> None:
    with FakeOllama() as ollama, FakeGemini() as gemini:
        first = _runtime(tmp_path, EmbeddingSettings(provider="ollama", base_url=ollama.url))
        try:
            doc = _add(first, corpus / "text/md/en/fastapi__features.md")
            assert process_document(first, doc).outcome == "succeeded"
        finally:
            first.close()
        # Same data dir and collection, another provider: 3072-dim vectors into a 768 collection.
        second = _runtime(tmp_path, EmbeddingSettings(provider="gemini", base_url=gemini.url))
        try:
            other = _add(second, corpus / "text/md/en/fastapi__python-types.md")
            result = process_document(second, other)
            assert result.outcome == "failed"
            assert result.error is not None
            assert "768" in result.error and "3072" in result.error
            # Refused by the project's index version, with the remedy: a new version beside it.
            assert result.error_class == "IndexMismatch"
            assert "docvec index create" in result.error
        finally:
            second.close()
