"""Operations on real stores: reconcile (both stores), the sweep for stuck documents, bulk retry,
the queue guard on the real Redis, and Prometheus metrics."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from app import outbox, services
from app.api.main import create_app
from app.config import Settings
from app.db import migrate
from app.db.models import Document, OutboxEntry, VectorizationAttempt, utcnow
from app.jobqueue import JobQueue
from app.pipeline.process import process_document
from app.runtime import Runtime
from app.vectorstore import Point, VectorStore
from app.vectorstore.edge import EdgeStore
from app.vectorstore.pgvector import PgVectorStore
from app.vectorstore.qdrant import QdrantStore
from tests.ops.harness import wait_until
from tests.plugins.brokers import Broker

DOCS = ["text/md/en/fastapi__features.md", "text/md/en/fastapi__python-types.md"]


@pytest.fixture(params=["qdrant", "edge", "pgvector"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    if request.param == "qdrant":
        s: VectorStore = QdrantStore(collection="chunks", path=tmp_path / "qdrant")
    elif request.param == "edge":
        s = EdgeStore(collection="chunks", path=tmp_path / "edge")
    else:
        url = request.getfixturevalue("pgvector_url")
        s = PgVectorStore(url=url, table=request.getfixturevalue("fresh_pgvector_table"))
    yield s
    s.close()


@pytest.fixture
def rt(tmp_path: Path, local_provider, store: VectorStore) -> Iterator[Runtime]:  # type: ignore[no-untyped-def]
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")  # type: ignore[call-arg]
    migrate.upgrade(settings.sqlalchemy_url)
    runtime = Runtime(settings, provider=local_provider, vector_store=store)
    yield runtime
    runtime.engine.dispose()


def _ingest(rt: Runtime, corpus: Path, rels: list[str]) -> list[uuid.UUID]:
    ids = []
    with rt.sessions() as s:
        proj = services.get_or_create_project(s, name="ops")
        for rel in rels:
            r = services.add_document(
                s, project=proj, storage=rt.storage, file_name=rel, path=corpus / rel
            )
            ids.append(r.document.id)
        s.commit()
    for i in ids:
        assert process_document(rt, i).outcome == "succeeded"
    return ids


def test_reconcile_reports_and_repairs_drift(rt: Runtime, corpus: Path) -> None:
    _, b = _ingest(rt, corpus, DOCS)
    store = rt.vector_store
    with rt.sessions() as s:
        assert services.reconcile(s, store=store).clean

    # Drift: an orphan point (its document is gone from SQL) and a document missing a point.
    orphan = uuid.uuid4()
    store.upsert([Point(orphan, [0.1] * 384, uuid.uuid4(), uuid.uuid4(), 0, "ghost.txt")])
    victim = next(iter(store.point_ids(document_ids=[b])))
    store.delete_points([victim])
    with rt.sessions() as s:
        report = services.reconcile(s, store=store)
        assert report.orphan_points == {orphan}
        assert report.missing_points == {b: 1}
        assert not report.clean
        jobs = services.repair(s, store=store, report=report)
        s.commit()
    assert [d for d, _ in jobs] == [b]
    for d, g in jobs:
        assert process_document(rt, d, g).outcome == "succeeded"
    with rt.sessions() as s:
        assert services.reconcile(s, store=store).clean


def test_sweep_requeues_stuck_and_lost_but_not_queued(rt: Runtime, corpus: Path) -> None:
    with rt.sessions() as s:
        proj = services.get_or_create_project(s, name="sweep")
        ids = []
        for i in range(4):
            r = services.add_document(
                s,
                project=proj,
                storage=rt.storage,
                file_name=f"d{i}.txt",
                pieces=[f"document number {i} about sweeping. ".encode() * 20],
            )
            ids.append(r.document.id)
        s.commit()
        stuck, lost, waiting, dead = ids
        old = utcnow() - timedelta(hours=2)
        s.execute(
            update(Document)
            .where(Document.id.in_([stuck, dead]))
            .values(status="processing", updated_at=old)
        )
        # `lost` was published long ago and its message vanished; `waiting`'s job is still in
        # the outbox (the broker was down when it was recorded).
        s.execute(
            update(Document)
            .where(Document.id.in_([lost, waiting]))
            .values(updated_at=old, queued_at=old)
        )
        outbox.put_jobs(s, [(waiting, 1)], now=old)
        # `dead` already killed its worker max_runs times in this generation.
        for _ in range(2):
            s.add(VectorizationAttempt(document_id=dead, generation=1, outcome="running"))
        # A run whose worker died two hours ago, on a document since vectorized by another run.
        s.add(
            VectorizationAttempt(document_id=stuck, generation=0, outcome="running", started_at=old)
        )
        s.commit()
        # While messages wait in the queue, a long backlog is not mistaken for loss.
        busy = services.sweep_stuck(
            s, stuck_after_s=600, pending_after_s=600, queue_depth=3, max_runs=2
        )
        assert (stuck, 1) in busy.requeued and (lost, 1) not in busy.requeued
        s.rollback()
        result = services.sweep_stuck(
            s, stuck_after_s=600, pending_after_s=600, queue_depth=0, max_runs=2
        )
        s.commit()
        assert sorted(result.requeued) == sorted([(stuck, 1), (lost, 1)])
        assert result.failed == [dead]
        assert result.abandoned == 1
        d = s.get(Document, dead)
        assert d is not None and d.status == "failed" and "died" in (d.error or "")
        closed = s.scalars(
            select(VectorizationAttempt).where(VectorizationAttempt.outcome == "abandoned")
        ).all()
        assert [a.document_id for a in closed] == [stuck]
        assert closed[0].finished_at is not None and "worker stopped" in (closed[0].error or "")
        # The sweep's verdict is in the outbox, in the same transaction: one row per re-queued
        # document, beside the one that was already waiting.
        rows = s.execute(select(OutboxEntry.document_id, OutboxEntry.generation)).all()
        assert sorted(rows) == sorted([(stuck, 1), (lost, 1), (waiting, 1)])
        # Fresh documents are never touched, whatever their status.
        again = services.sweep_stuck(
            s, stuck_after_s=600, pending_after_s=600, queue_depth=0, max_runs=2
        )
        assert again.requeued == [] and again.failed == [] and again.abandoned == 0


def test_job_queue_on_either_broker(tmp_path: Path, any_broker: Broker) -> None:
    """Publishing, the queue depth and the readiness probe go through kombu on both brokers."""
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path,
        broker_url=any_broker.url,  # type: ignore[call-arg]
        queue=f"q_{uuid.uuid4().hex[:6]}",
        broker_consumer_timeout_s=7200,
    )
    q = JobQueue(settings)
    try:
        assert q.depth() == 0  # the queue does not even exist yet
        doc = uuid.uuid4()
        q.enqueue(doc, 1)
        q.enqueue(doc, 2)
        assert q.depth() == 2
        ping = q.ping()
        assert ping["queue_depth"] == 2 and "guest" not in ping["broker"]
    finally:
        q.close()


def test_publish_to_a_broker_that_is_down_fails_fast_and_loses_nothing(
    tmp_path: Path, any_broker: Broker, local_provider
) -> None:  # type: ignore[no-untyped-def]
    """An upload while the broker is down is 202 and recorded; the relay publishes it later."""
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        broker_url=any_broker.url,  # type: ignore[call-arg]
        queue=f"q_{uuid.uuid4().hex[:6]}",
        broker_consumer_timeout_s=7200,
        outbox_relay_interval_s=0.5,
    )
    migrate.upgrade(settings.sqlalchemy_url)
    rt = Runtime(settings, provider=local_provider)
    q = JobQueue(settings)
    try:
        with TestClient(create_app(settings, runtime=rt, enqueue=q.enqueue)) as c:
            pid = c.post("/projects", json={"name": "outage"}).json()["id"]
            any_broker.stop()
            r = c.post(
                f"/projects/{pid}/documents",
                files=[("files", ("a.txt", b"written while the broker was down. " * 20))],
            )
            assert r.status_code == 202, r.text
            body = r.json()
            assert body["published"] is False and "broker" in body["message"]
            doc = body["documents"][0]
            assert doc["created"] is True and doc["status"] == "pending"
            with rt.sessions() as s:
                assert s.scalar(select(func.count()).select_from(OutboxEntry)) == 1
            # A re-vectorize click meanwhile coalesces into the recorded job.
            again = c.post(f"/documents/{doc['id']}/revectorize").json()
            assert again["queued"] == 0
            any_broker.start()

            def relayed() -> bool:
                with rt.sessions() as s:
                    return s.scalar(select(func.count()).select_from(OutboxEntry)) == 0

            wait_until(relayed, 90, "the API's relay to publish the recorded job")
            assert q.depth() == 1
    finally:
        if any_broker.stopped:
            any_broker.start()
        q.close()
        rt.close()


def test_retry_failed_and_metrics_through_api(tmp_path: Path, local_provider, corpus: Path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")  # type: ignore[call-arg]
    migrate.upgrade(settings.sqlalchemy_url)
    rt = Runtime(settings, provider=local_provider)
    ran: list[uuid.UUID] = []

    def enqueue(doc_id: uuid.UUID, generation: int) -> None:
        ran.append(doc_id)
        process_document(rt, doc_id, generation)

    with TestClient(create_app(settings, runtime=rt, enqueue=enqueue)) as c:
        pid = c.post("/projects", json={"name": "m"}).json()["id"]
        files = [
            ("files", ("a.md", (corpus / DOCS[0]).read_bytes(), "text/markdown")),
            (
                "files",
                ("e.pdf", (corpus / "pdf/encrypted/password.pdf").read_bytes(), "application/pdf"),
            ),
        ]
        docs = c.post(f"/projects/{pid}/documents", files=files).json()["documents"]
        failed_id = docs[1]["id"]
        assert c.get(f"/documents/{failed_id}").json()["status"] == "failed"
        ran.clear()
        r = c.post(f"/projects/{pid}/retry-failed")
        assert r.status_code == 202 and r.json()["queued"] == 1
        assert [str(d) for d in ran] == [failed_id]
        attempts = c.get(f"/documents/{failed_id}").json()["attempts"]
        assert [a["generation"] for a in attempts] == [1, 2]
        assert attempts[-1]["outcome"] == "failed"

        text = c.get("/metrics").text
        assert 'docvec_documents{status="vectorized"} 1.0' in text
        assert 'docvec_documents{status="failed"} 1.0' in text
        assert 'docvec_task_failures_total{error_class="EncryptedDocument"}' in text
        assert "docvec_chunks_embedded_total" in text
    rt.close()
