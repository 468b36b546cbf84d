"""Fault injection with real processes (DESIGN §2, invariants 2-6).

* Kill test: 3 `docvec worker` processes over 100 real-text documents; a random worker is
  SIGKILLed (with its children, like a machine dying) every few seconds and restarted. Every
  document must end vectorized, chunk rows = points, and reconcile must find nothing. Flower,
  started with `docvec flower`, must have seen the tasks.
* Broker restart: the broker (a private Redis, or RabbitMQ's application) restarts mid-run; every
  document still finishes and the workers stay up. Their Prometheus endpoint reports what they
  embedded.
* Flower: a corrupt file's task is a FAILURE naming it and its error class.

Every test runs twice: on Redis and on RabbitMQ (``any_broker``, tests/plugins/brokers.py).
* Concurrency: ten re-vectorize requests for one document at once, against a real `docvec api`
  process, leave exactly one run's chunks.

SQL is a fresh database on the machine's PostgreSQL; the shared vector store is pgvector (pgserver).
"""

from __future__ import annotations

import concurrent.futures
import time
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from app import services
from app.config import Settings
from app.db.models import Document, DocumentChunk
from app.runtime import Runtime
from app.vectorstore.pgvector import PgVectorStore
from tests.ops.harness import (
    DOCVEC,
    Proc,
    free_port,
    start_worker,
    wait_port,
    wait_until,
)
from tests.plugins.brokers import Broker

pytestmark = pytest.mark.slow


def _texts(corpus: Path, n: int, size: int = 900) -> list[tuple[str, bytes]]:
    """n distinct real-text documents of about ``size`` characters (War and Peace slices)."""
    text = (corpus / "text/txt/book-war-and-peace-1225p.txt").read_text(encoding="utf-8-sig")
    start = len(text) // 10
    docs = []
    for i in range(n):
        piece = text[start + i * size : start + (i + 1) * size]
        docs.append((f"wp-{i:03d}.txt", piece.encode()))
    return docs


def _runtime(local_provider) -> Runtime:  # type: ignore[no-untyped-def]
    return Runtime(Settings(_env_file=None), provider=local_provider)  # type: ignore[call-arg]


def _upload(api: str, pid: str, docs: list[tuple[str, bytes]]) -> list[str]:
    ids = []
    for i in range(0, len(docs), 25):
        files = [("files", (n, b, "text/plain")) for n, b in docs[i : i + 25]]
        r = httpx.post(f"{api}/projects/{pid}/documents", files=files, timeout=60)
        assert r.status_code == 202, r.text
        ids += [d["id"] for d in r.json()["documents"]]
    return ids


def _counts(rt: Runtime) -> dict[str, int]:
    with rt.sessions() as s:
        rows = s.execute(select(Document.status, func.count()).group_by(Document.status)).all()
        return {st: n for st, n in rows}


def _assert_consistent(rt: Runtime, store: PgVectorStore) -> None:
    with rt.sessions() as s:
        chunk_ids = set(s.scalars(select(DocumentChunk.id)))
        n_rows = s.scalar(select(func.count()).select_from(DocumentChunk))
        assert n_rows == len(chunk_ids) > 0
        assert store.point_ids() == chunk_ids
        assert store.count() == n_rows  # no duplicate points
        assert services.reconcile(s, store=store).clean


def _api(env: dict[str, str], tmp: Path) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc([DOCVEC, "api", "--port", str(port)], env, tmp / "api.log", tmp)
    wait_port(port, timeout=60)
    return proc, f"http://127.0.0.1:{port}"


def test_kill_random_workers_loses_nothing(
    cluster: dict[str, str], tmp_path: Path, corpus: Path, local_provider
) -> None:  # type: ignore[no-untyped-def]
    rt = _runtime(local_provider)
    store = PgVectorStore(url=cluster["DOCVEC_PGVECTOR_URL"], table=cluster["DOCVEC_COLLECTION"])
    procs: list[Proc] = []
    try:
        api, url = _api(cluster, tmp_path)
        procs.append(api)
        workers = [start_worker(cluster, tmp_path, f"w{i}") for i in range(3)]
        procs += workers
        flower_port = free_port()
        # Flower 2 answers its JSON API only with auth configured, or with this switch.
        flower = Proc(
            [DOCVEC, "flower", f"--port={flower_port}"],
            {**cluster, "FLOWER_UNAUTHENTICATED_API": "true"},
            tmp_path / "flower.log",
            tmp_path,
        )
        procs.append(flower)

        pid = httpx.post(f"{url}/projects", json={"name": "kill"}).json()["id"]
        ids = _upload(url, pid, _texts(corpus, 100))
        assert len(set(ids)) == 100

        kills = 0
        kill_until = time.monotonic() + 24
        while time.monotonic() < kill_until:
            time.sleep(4)
            victim = workers[kills % 3]
            victim.kill()
            victim.start()
            kills += 1
        assert kills >= 5

        wait_until(
            lambda: _counts(rt).get("vectorized", 0) == 100,
            360,
            "all 100 documents vectorized",
            on_tick=lambda: None,
        )
        assert _counts(rt) == {"vectorized": 100}
        _assert_consistent(rt, store)

        # Flower watched the same broker and saw the work.
        wait_port(flower_port, timeout=30)
        r = httpx.get(f"http://127.0.0.1:{flower_port}/api/tasks", timeout=30)
        assert r.status_code == 200, (r.status_code, r.text[:300], flower.tail())
        seen = r.json()
        assert any(t.get("name") == "docvec.process_documents" for t in seen.values())
    finally:
        for p in procs:
            p.stop()
        store.close()
        rt.close()


def test_broker_restart_metrics_and_concurrent_revectorize(
    cluster: dict[str, str], any_broker: Broker, tmp_path: Path, corpus: Path, local_provider
) -> None:  # type: ignore[no-untyped-def]
    env = cluster
    metrics_port = free_port()
    rt = _runtime(local_provider)
    store = PgVectorStore(url=env["DOCVEC_PGVECTOR_URL"], table=env["DOCVEC_COLLECTION"])
    procs: list[Proc] = []
    try:
        api, url = _api(env, tmp_path)
        procs.append(api)
        procs.append(
            start_worker({**env, "DOCVEC_WORKER_METRICS_PORT": str(metrics_port)}, tmp_path, "m0")
        )
        procs.append(start_worker(env, tmp_path, "m1"))
        pid = httpx.post(f"{url}/projects", json={"name": "restart"}).json()["id"]
        ids = _upload(url, pid, _texts(corpus, 30))

        wait_until(lambda: _counts(rt).get("vectorized", 0) >= 3, 180, "a few documents done")
        any_broker.restart(down_s=3)
        wait_until(
            lambda: _counts(rt).get("vectorized", 0) == 30,
            300,
            "all 30 documents vectorized after the broker restart",
        )
        _assert_consistent(rt, store)
        # The workers rode out the restart: reconnected, never exited.
        assert all(p.alive() for p in procs[1:]), [p.tail() for p in procs[1:]]

        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        embedded = [
            ln for ln in text.splitlines() if ln.startswith("docvec_chunks_embedded_total{")
        ]
        assert embedded and float(embedded[0].split()[-1]) > 0, text[:2000]

        # Ten concurrent re-vectorize requests for one document: exactly one run's chunks.
        target = ids[0]
        before = store.point_ids(document_ids=[uuid.UUID(target)])
        gen0 = httpx.get(f"{url}/documents/{target}").json()["generation"]
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            codes = list(
                pool.map(
                    lambda _: (
                        httpx.post(f"{url}/documents/{target}/revectorize", timeout=60).status_code
                    ),
                    range(10),
                )
            )
        assert codes == [202] * 10

        def settled() -> bool:
            d = httpx.get(f"{url}/documents/{target}").json()
            return bool(d["status"] == "vectorized" and d["generation"] > gen0)

        wait_until(settled, 180, "the re-vectorized document to settle")
        time.sleep(3)  # let any superseded run finish and prove it wrote nothing
        doc = httpx.get(f"{url}/documents/{target}").json()
        assert doc["status"] == "vectorized"
        assert store.point_ids(document_ids=[uuid.UUID(target)]) == before
        with rt.sessions() as s:
            rows = s.scalars(
                select(DocumentChunk.id).where(DocumentChunk.document_id == uuid.UUID(target))
            ).all()
        assert set(rows) == before and len(rows) == doc["chunk_count"]
        # The run that wrote the document is the newest request's; older ones wrote nothing.
        last_ok = [a for a in doc["attempts"] if a["outcome"] == "succeeded"][-1]
        assert last_ok["generation"] == doc["generation"]
        _assert_consistent(rt, store)
    finally:
        for p in reversed(procs):
            p.stop()
        store.close()
        rt.close()


def test_flower_tells_the_truth(cluster: dict[str, str], tmp_path: Path, corpus: Path) -> None:
    """A task whose document fails for good is a FAILURE in Flower naming the document, its error
    class and reason; a task whose documents were vectorized a SUCCESS."""
    procs: list[Proc] = []
    try:
        api, url = _api(cluster, tmp_path)
        procs.append(api)
        procs.append(start_worker(cluster, tmp_path, "f0"))
        flower_port = free_port()
        flower = Proc(
            [DOCVEC, "flower", f"--port={flower_port}"],
            {**cluster, "FLOWER_UNAUTHENTICATED_API": "true"},
            tmp_path / "flower.log",
            tmp_path,
        )
        procs.append(flower)
        wait_port(flower_port, timeout=60)
        time.sleep(2)  # Flower subscribes to the event stream after it listens
        pid = httpx.post(f"{url}/projects", json={"name": "flower"}).json()["id"]
        broken = (corpus / "pdf/broken/truncated-pdflatex-4-pages.pdf").read_bytes()
        texts = _texts(corpus, 2)

        def upload(files: list[tuple[str, tuple[str, bytes, str]]]) -> list[str]:
            r = httpx.post(f"{url}/projects/{pid}/documents", files=files, timeout=60)
            assert r.status_code == 202, r.text
            return [d["id"] for d in r.json()["documents"]]

        def states() -> dict[str, dict[str, object]]:
            tasks = httpx.get(f"http://127.0.0.1:{flower_port}/api/tasks", timeout=30).json()
            by_doc: dict[str, dict[str, object]] = {}
            for task in tasks.values():
                args = str(task.get("args") or "")
                for doc in ids:
                    if doc in args and task.get("state") in ("SUCCESS", "FAILURE"):
                        by_doc[doc] = task
            return by_doc

        # Alone in its message, a good document's task is a SUCCESS.
        ids = upload([("files", ("good.txt", texts[0][1], "text/plain"))])
        good = ids[0]
        wait_until(lambda: good in states(), 180, "Flower to see the task end", on_tick=None)
        assert states()[good]["state"] == "SUCCESS"
        # Uploaded together, a good and a broken document share one message (one task): it is
        # a FAILURE naming the broken document, its error class and reason; the good one is
        # vectorized all the same.
        other, bad = upload(
            [
                ("files", ("other.txt", texts[1][1], "text/plain")),
                ("files", ("broken.pdf", broken, "application/pdf")),
            ]
        )
        ids += [other, bad]
        wait_until(lambda: bad in states(), 180, "Flower to see the task end", on_tick=None)
        seen = states()
        assert seen[bad]["state"] == "FAILURE", seen[bad]
        exception = str(seen[bad].get("exception"))
        assert "DocumentFailed" in exception and "CorruptDocument" in exception, exception
        assert bad in exception and other not in exception, exception
        doc = httpx.get(f"{url}/documents/{bad}").json()
        assert doc["status"] == "failed" and doc["error"] and doc["error"][:40] in exception
        assert httpx.get(f"{url}/documents/{other}").json()["status"] == "vectorized"
    finally:
        for p in reversed(procs):
            p.stop()
