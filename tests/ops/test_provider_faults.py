"""Provider faults through real workers: a loopback OpenAI-compatible server (the real ``openai``
SDK talks to it) fails 30% of calls with 429 + Retry-After, 500 or a timeout — every document still
finishes; with a bad key (401) every document fails at once, with no retry loop, and the reason
names the provider.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app import services
from app.api.main import create_app
from app.config import Settings
from app.db.models import Document, VectorizationAttempt
from app.runtime import Runtime
from tests.embeddings.fakes import FakeOpenAI, Reply, Seen, openai_error
from tests.ops.harness import wait_until, war_and_peace_docs
from tests.plugins.brokers import Broker

pytestmark = pytest.mark.slow

REQUEST_TIMEOUT_S = 2


class FlakyOpenAI(FakeOpenAI):
    """Fails a seeded 30% of embedding calls: 429 with Retry-After, 500, or no answer in time."""

    def __init__(self, failure_rate: float = 0.3, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.failure_rate = failure_rate
        self.failures = 0
        self._faults = random.Random(42)

    def _next_scripted(self, seen: Seen) -> Reply | None:
        if self._faults.random() >= self.failure_rate:
            return super()._next_scripted(seen)
        self.failures += 1
        kind = self._faults.choice(["429", "500", "timeout"])
        if kind == "429":
            return openai_error(
                429,
                "Rate limit reached",
                type_="requests",
                code="rate_limit_exceeded",
                headers={"retry-after": "1"},
            )
        if kind == "500":
            return openai_error(500, "The server had an error", type_="server_error")
        return Reply(delay_s=REQUEST_TIMEOUT_S + 1.5)  # answers after the client gave up


class RejectingOpenAI(FakeOpenAI):
    """A key the provider does not accept: 401 on every call."""

    def _next_scripted(self, seen: Seen) -> Reply | None:
        return openai_error(401, "Incorrect API key provided: sk-bad***.", code="invalid_api_key")


@pytest.fixture
def run(make_service_env, spawn_worker, monkeypatch: pytest.MonkeyPatch, any_broker: Broker):  # type: ignore[no-untyped-def]
    """Workers and an API on the test's broker (Redis and RabbitMQ: ``any_broker``)."""
    opened: list[Runtime] = []
    clients: list[TestClient] = []

    def start(fake: FakeOpenAI, workers: int) -> tuple[TestClient, Runtime]:
        env = make_service_env(
            DOCVEC_BROKER_URL=any_broker.url,
            DOCVEC_WORKER_CONCURRENCY="2",
            DOCVEC_RETRY_BACKOFF_S="[1, 2, 3]",
            DOCVEC_TASK_SOFT_TIME_LIMIT_S="40",
            DOCVEC_TASK_TIME_LIMIT_S="50",
            DOCVEC_EXTRACT_TIMEOUT_S="20",
            DOCVEC_EMBEDDING__PROVIDER="openai",
            DOCVEC_EMBEDDING__MODEL="text-embedding-3-small",
            DOCVEC_EMBEDDING__DIMENSIONS="64",
            DOCVEC_EMBEDDING__BASE_URL=fake.url + "/v1",
            DOCVEC_EMBEDDING__BATCH_SIZE="2",
            DOCVEC_EMBEDDING__REQUEST_TIMEOUT_S=str(REQUEST_TIMEOUT_S),
            DOCVEC_EMBEDDING__RETRY_BUDGET_S="20",
            DOCVEC_CHUNKING__CHUNK_SIZE="300",
            DOCVEC_CHUNKING__CHUNK_OVERLAP="50",
            OPENAI_API_KEY="sk-test-provider-faults",
            DOCVEC_LOG_LEVEL="WARNING",
        )
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        for i in range(workers):
            spawn_worker(env, f"p{i}")
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        rt = Runtime(settings)
        opened.append(rt)
        client = TestClient(create_app(settings, runtime=rt))
        client.__enter__()
        clients.append(client)
        return client, rt

    yield start
    for client in clients:  # stops the API's outbox relay thread
        client.__exit__(None, None, None)
    for rt in opened:
        rt.close()


def _statuses(rt: Runtime) -> dict[str, int]:
    with rt.sessions() as s:
        rows = s.execute(select(Document.status, func.count()).group_by(Document.status)).all()
        return {st: n for st, n in rows}


def _upload(client: TestClient, docs: list[tuple[str, bytes]]) -> str:
    pid = client.post("/projects", json={"name": "faults"}).json()["id"]
    files = [("files", (n, b, "text/plain")) for n, b in docs]
    r = client.post(f"/projects/{pid}/documents", files=files)
    assert r.status_code == 202, r.text
    return str(pid)


def test_flaky_provider_every_document_finishes(run, corpus: Path) -> None:  # type: ignore[no-untyped-def]
    with FlakyOpenAI(dim=64) as fake:
        client, rt = run(fake, workers=2)
        _upload(client, war_and_peace_docs(corpus, 20))
        wait_until(lambda: _statuses(rt).get("vectorized", 0) == 20, 300, "20 documents done")
        assert _statuses(rt) == {"vectorized": 20}
        assert fake.failures >= 5, "the fault injection did not happen"
        with rt.sessions() as s:
            assert services.reconcile(s, store=rt.vector_store).clean
            usages = [a.usage or {} for a in s.scalars(select(VectorizationAttempt))]
        assert sum(u.get("retries") or 0 for u in usages) > 0


def test_rejected_key_fails_fast_without_retry_loop(run, corpus: Path) -> None:  # type: ignore[no-untyped-def]
    with RejectingOpenAI(dim=64) as fake:
        client, rt = run(fake, workers=1)
        _upload(client, war_and_peace_docs(corpus, 5))
        wait_until(lambda: _statuses(rt).get("failed", 0) == 5, 120, "5 documents failed")
        with rt.sessions() as s:
            docs = s.scalars(select(Document)).all()
            attempts = s.scalar(select(func.count()).select_from(VectorizationAttempt))
        assert all(d.failed_stage == "embed" for d in docs), [
            (d.failed_stage, d.error) for d in docs
        ]
        assert all("openai" in (d.error or "").lower() for d in docs), docs[0].error
        assert all("sk-test-provider-faults" not in (d.error or "") for d in docs)
        assert attempts == 5  # one attempt each: a 401 is never retried
        # Batches already in flight may each get their 401, but none is ever sent twice.
        bodies = [r.raw for r in fake.embed_requests]
        assert len(bodies) == len(set(bodies)) >= 5
