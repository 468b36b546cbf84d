"""Batches across documents in worker mode (README, "Batches across documents").

A real `docvec worker` on Redis embeds through the real ``openai`` SDK against a loopback
OpenAI-compatible server that counts requests. Many one-chunk documents uploaded through the API
fill provider requests together (the outbox relay sends messages of several documents), while
each document keeps its own attempt row, outcome and points; a transient provider failure sends
the documents of the failed call back through the outbox, together, and they finish on their
second attempt.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app import services
from app.api.main import create_app
from app.config import Settings
from app.db.models import Document, VectorizationAttempt
from app.runtime import Runtime
from tests.embeddings.fakes import FakeOpenAI, openai_error
from tests.ops.harness import wait_until, war_and_peace_docs

pytestmark = pytest.mark.slow

BATCH = 16


@pytest.fixture
def deployment(make_service_env, spawn_worker, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """``deployment(fake)``: one worker (two processes) and an API on Redis, embedding through
    ``fake`` in requests of at most :data:`BATCH` inputs."""
    opened: list[tuple[TestClient, Runtime]] = []

    def start(fake: FakeOpenAI) -> tuple[TestClient, Runtime]:
        env = make_service_env(
            DOCVEC_WORKER_CONCURRENCY="2",
            DOCVEC_EMBEDDING__PROVIDER="openai",
            DOCVEC_EMBEDDING__MODEL="text-embedding-3-small",
            DOCVEC_EMBEDDING__DIMENSIONS="64",
            DOCVEC_EMBEDDING__BASE_URL=fake.url + "/v1",
            DOCVEC_EMBEDDING__BATCH_SIZE=str(BATCH),
            DOCVEC_EMBEDDING__RETRY_BUDGET_S="1",
            DOCVEC_EMBEDDING__MAX_ATTEMPTS="2",
            DOCVEC_RETRY_BACKOFF_S="[1, 1, 1]",
            # Long enough for the uploads of one test to meet in full messages.
            DOCVEC_JOB_BATCH__WAIT_S="3",
            OPENAI_API_KEY="sk-test-job-batching",
            DOCVEC_LOG_LEVEL="WARNING",
        )
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        spawn_worker(env, "batching")
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        rt = Runtime(settings)
        client = TestClient(create_app(settings, runtime=rt))
        client.__enter__()
        opened.append((client, rt))
        return client, rt

    yield start
    for client, rt in opened:
        client.__exit__(None, None, None)
        rt.close()


def _upload(client: TestClient, pid: str, docs: list[tuple[str, bytes]]) -> list[str]:
    files = [("files", (name, body, "text/plain")) for name, body in docs]
    r = client.post(f"/projects/{pid}/documents", files=files)
    assert r.status_code == 202, r.text
    return [d["id"] for d in r.json()["documents"]]


def _statuses(rt: Runtime) -> Counter[str]:
    with rt.sessions() as s:
        return Counter(s.scalars(select(Document.status)))


def test_one_chunk_documents_share_provider_requests(deployment, corpus: Path) -> None:  # type: ignore[no-untyped-def]
    n = 200
    with FakeOpenAI(dim=64) as fake:
        client, rt = deployment(fake)
        pid = client.post("/projects", json={"name": "batching"}).json()["id"]
        docs = war_and_peace_docs(corpus, n, size=300)  # distinct texts, one chunk each
        broken = (corpus / "pdf/broken/truncated-pdflatex-4-pages.pdf").read_bytes()
        ids: list[str] = []
        for start in range(0, n, 50):  # four requests, as a client uploading a folder would
            ids += _upload(client, pid, docs[start : start + 50])
        r = client.post(
            f"/projects/{pid}/documents",
            files=[("files", ("broken.pdf", broken, "application/pdf"))],
        )
        bad = r.json()["documents"][0]["id"]
        wait_until(
            lambda: _statuses(rt)["vectorized"] + _statuses(rt)["failed"] == n + 1,
            240,
            f"{n + 1} documents finished",
        )
        assert _statuses(rt) == Counter({"vectorized": n, "failed": 1})
        requests = fake.embed_requests
        inputs = [len(r.body["input"]) for r in requests]
        # Each text embedded once, and requests filled across documents: the target is
        # at most 1.2 x (chunks / batch size); one document per task would send n requests.
        assert sum(inputs) == n
        assert len(requests) <= 1.2 * n / BATCH, inputs
        assert max(inputs) == BATCH
        with rt.sessions() as s:
            attempts = s.scalars(select(VectorizationAttempt)).all()
            by_doc = Counter(str(a.document_id) for a in attempts)
            assert set(by_doc) == {*ids, bad} and set(by_doc.values()) == {1}
            assert {a.outcome for a in attempts if str(a.document_id) != bad} == {"succeeded"}
            failed = s.get(Document, uuid.UUID(bad))
            assert failed is not None and failed.failed_stage == "extract"
            # Documents of one message share a task but each has its own attempt row.
            tasks = Counter(a.task_id for a in attempts)
            assert max(tasks.values()) > 1 and all(a.attempt == 1 for a in attempts)
            assert services.reconcile(s, store=rt.vector_store).clean
        # Every point is its own document's: a search for one text finds that document first.
        hits = client.post(
            f"/projects/{pid}/search", json={"query": docs[7][1].decode(), "top_k": 1}
        ).json()["results"]
        assert hits[0]["document_id"] == ids[7]


def test_a_failed_call_retries_its_documents_together(deployment, corpus: Path) -> None:  # type: ignore[no-untyped-def]
    n = 12
    with FakeOpenAI(dim=64) as fake:
        # The first call fails twice (both of its tries): a transient error for its documents.
        fake.push(
            openai_error(500, "The server had an error", type_="server_error"),
            openai_error(500, "The server had an error", type_="server_error"),
        )
        client, rt = deployment(fake)
        pid = client.post("/projects", json={"name": "retry"}).json()["id"]
        ids = _upload(client, pid, war_and_peace_docs(corpus, n, size=300))
        wait_until(lambda: _statuses(rt)["vectorized"] == n, 180, f"{n} documents vectorized")
        with rt.sessions() as s:
            attempts = s.scalars(
                select(VectorizationAttempt).order_by(VectorizationAttempt.started_at)
            ).all()
        runs: dict[str, list[tuple[int, str]]] = {}
        for a in attempts:
            runs.setdefault(str(a.document_id), []).append((a.attempt, a.outcome))
        assert set(runs) == set(ids)
        assert all(r == [(1, "retrying"), (2, "succeeded")] for r in runs.values()), runs
        # The retry was one message again: its documents shared one task.
        retry_tasks = {a.task_id for a in attempts if a.attempt == 2}
        assert len(retry_tasks) == 1
        ok = fake.embed_requests[2:]
        assert len(ok) == math.ceil(n / BATCH) and sum(len(r.body["input"]) for r in ok) == n
