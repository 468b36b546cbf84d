"""A vector-store outage in the middle of a document's upsert, for real (issue 12).

The pgvector store talks to the session's pgserver PostgreSQL through :class:`OutageProxy`, a TCP
proxy in a thread that forwards to the server's Unix socket. The proxy watches what the store
sends and, the moment the upsert of the document under test goes by (its file name is in the
INSERT's parameters), forwards it and cuts: every forwarded connection is closed and the
listener with them, so new connections are refused. Nothing is mocked: the store, SQLAlchemy's
pool, psycopg, the real local model and the pipeline see a real dropped connection and a real
refusal. SQL (the docvec database) is SQLite and does not go through the proxy.

Embeddings are counted as the pipeline records them: the attempt row's ``usage["requests"]``,
compared with a run of the same bytes with no outage.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import shutil
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from app.config import Settings
from app.db import migrate
from app.db.models import Document, DocumentChunk, VectorizationAttempt
from app.pipeline.process import process_document
from app.runtime import Runtime
from app.vectorstore.pgvector import PgVectorStore
from tests.pipeline.helpers import add_file

#: How long the short outage lasts, from the cut (the default store retries outlast it).
OUTAGE_S = 3.0


class OutageProxy:
    """TCP on 127.0.0.1 (a fixed port) forwarded to a PostgreSQL Unix socket; it can be cut.

    :meth:`cut` closes the listener (new connections are refused) and every forwarded
    connection; :meth:`restore` listens again on the same port. :meth:`cut_when_sent` arms a
    cut for the moment the client sends given bytes (forwarded first, so the server is in the
    middle of the statement), optionally restored a given time later.
    """

    def __init__(self, upstream: str) -> None:
        self._upstream = upstream
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._trigger: bytes | None = None
        self._restore_after_s: float | None = None
        self._timers: list[threading.Timer] = []
        self._closed = False
        #: Cuts done, and connections forwarded since the start.
        self.cuts = 0
        self.forwarded = 0
        self.port = 0
        #: Set when a restore armed by :meth:`cut_when_sent` has run.
        self.restored = threading.Event()
        with self._lock:
            self._listen()

    # -- control ---------------------------------------------------------------------------------

    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def cut_when_sent(self, trigger: bytes, *, restore_after_s: float | None) -> None:
        with self._lock:
            self._trigger = trigger
            self._restore_after_s = restore_after_s
            self.restored.clear()

    def cut(self) -> None:
        with self._lock:
            self.cuts += 1
            self._drop_everything()

    def restore(self) -> None:
        with self._lock:
            if self._listener is None and not self._closed:
                self._listen()
        self.restored.set()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._trigger = None
            for timer in self._timers:
                timer.cancel()
            self._drop_everything()

    # -- internals (callers hold the lock where noted) -------------------------------------------

    def _listen(self) -> None:
        """Listen on ``self.port`` (any free port the first time). Lock held."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(16)
        self.port = int(sock.getsockname()[1])
        self._listener = sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def _drop_everything(self) -> None:
        """Close the listener and every forwarded connection. Lock held."""
        if self._listener is not None:
            _hang_up(self._listener)  # wakes the accept() blocked on it
            self._listener = None
        for sock in self._conns:
            _hang_up(sock)
        self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut or closed
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(self._upstream)
            except OSError:
                _hang_up(client)
                _hang_up(upstream)
                continue
            with self._lock:
                if self._listener is not listener:  # cut meanwhile: this one is refused too
                    _hang_up(client)
                    _hang_up(upstream)
                    continue
                self._conns.update((client, upstream))
                self.forwarded += 1
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, watch: bool) -> None:
        tail = b""
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                if watch and self._trigger is not None:
                    seen = tail + data
                    tail = seen[-len(self._trigger) :]
                    if self._trigger in seen:
                        self._fire()
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)
            _hang_up(src)
            _hang_up(dst)

    def _fire(self) -> None:
        with self._lock:
            if self._trigger is None:
                return
            self._trigger = None
            self.cuts += 1
            self._drop_everything()
            if self._restore_after_s is not None:
                timer = threading.Timer(self._restore_after_s, self.restore)
                timer.daemon = True
                self._timers.append(timer)
                timer.start()


def _hang_up(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture
def proxy(pgvector_url: str) -> Iterator[OutageProxy]:
    """An :class:`OutageProxy` in front of the session's pgserver PostgreSQL."""
    socket_dir = make_url(pgvector_url).query["host"]
    assert isinstance(socket_dir, str)
    sockets = [p for p in glob.glob(f"{socket_dir}/.s.PGSQL.*") if not p.endswith(".lock")]
    assert len(sockets) == 1, sockets
    p = OutageProxy(sockets[0])
    yield p
    p.close()


def _runtime(
    tmp_path: Path, proxy: OutageProxy, table: str, provider: Any, **settings: Any
) -> Runtime:
    """SQLite under ``tmp_path`` (migrated), the real local model, pgvector through ``proxy``."""
    s = Settings(_env_file=None, data_dir=tmp_path / "data", **settings)
    migrate.upgrade(s.sqlalchemy_url)
    store = PgVectorStore(url=proxy.url(), table=table, connect_timeout_s=2)
    return Runtime(s, provider=provider, vector_store=store)


@pytest.fixture
def stormy(
    tmp_path: Path, proxy: OutageProxy, fresh_pgvector_table: str, local_provider: Any
) -> Iterator[Runtime]:
    """A Runtime with the default store retries (DOCVEC_STORE_RETRY_*)."""
    rt = _runtime(tmp_path, proxy, fresh_pgvector_table, local_provider)
    yield rt
    rt.close()


@pytest.fixture
def impatient(
    tmp_path: Path, proxy: OutageProxy, fresh_pgvector_table: str, local_provider: Any
) -> Iterator[Runtime]:
    """A Runtime whose store retries wait 3 s at most in all (DOCVEC_STORE_RETRY_BUDGET_S=3)."""
    rt = _runtime(tmp_path, proxy, fresh_pgvector_table, local_provider, store_retry_budget_s=3)
    yield rt
    rt.close()


def _copy(corpus: Path, tmp_path: Path, name: str) -> Path:
    """The same Markdown document under a file name of its own (the proxy's trigger)."""
    path = tmp_path / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(corpus / "text/md/en/fastapi__features.md", path)
    return path


def _attempts(rt: Runtime, doc_id: uuid.UUID) -> list[VectorizationAttempt]:
    with rt.sessions() as s:
        return list(
            s.scalars(
                select(VectorizationAttempt)
                .where(VectorizationAttempt.document_id == doc_id)
                .order_by(VectorizationAttempt.started_at)
            )
        )


def _chunk_ids(rt: Runtime, doc_id: uuid.UUID) -> set[uuid.UUID]:
    with rt.sessions() as s:
        return set(s.scalars(select(DocumentChunk.id).where(DocumentChunk.document_id == doc_id)))


def _calm_run(rt: Runtime, corpus: Path, tmp_path: Path) -> dict[str, Any]:
    """Vectorize the document once with no outage (it also creates the table): its usage."""
    calm = add_file(rt, _copy(corpus, tmp_path, "calm.md"), project="calm")
    result = process_document(rt, calm)
    assert result.outcome == "succeeded", result.error
    (attempt,) = _attempts(rt, calm)
    assert attempt.usage is not None and attempt.usage["requests"] >= 1
    return dict(attempt.usage)


def _retries_logged(caplog: pytest.LogCaptureFixture, doc_id: uuid.UUID) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "app.retrying" and f"writing document {doc_id} failed" in r.getMessage()
    ]


# -- tests -----------------------------------------------------------------------------------------


def test_outage_of_a_few_seconds_mid_upsert_costs_no_second_embedding(
    stormy: Runtime,
    proxy: OutageProxy,
    corpus: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    calm_usage = _calm_run(stormy, corpus, tmp_path)

    name = f"blip-{uuid.uuid4().hex}.md"
    doc_id = add_file(stormy, _copy(corpus, tmp_path, name), project="stormy")
    proxy.cut_when_sent(name.encode(), restore_after_s=OUTAGE_S)
    with caplog.at_level(logging.WARNING, logger="app.retrying"):
        result = process_document(stormy, doc_id, final_attempt=False)

    # Retried in the process until the store was back (not left to the task's retry).
    assert result.outcome == "succeeded", result.error
    assert proxy.cuts == 1 and proxy.restored.is_set()
    retries = _retries_logged(caplog, doc_id)
    assert retries, "the store write was not retried in the process"
    # First the connection dropped under the INSERT, then new ones were refused.
    assert "dropped the connection (upsert points)" in retries[0], retries
    assert all(f"127.0.0.1:{proxy.port}" in m for m in retries), retries

    with stormy.sessions() as s:
        doc = s.get(Document, doc_id)
        assert doc is not None and doc.status == "vectorized" and doc.error is None
        chunk_count = doc.chunk_count
    (attempt,) = _attempts(stormy, doc_id)
    assert attempt.outcome == "succeeded" and attempt.error_class is None
    # One set of embedding requests: exactly what the calm run of the same bytes spent.
    assert attempt.usage == calm_usage
    assert attempt.usage["inputs"] == chunk_count == result.chunks

    points = stormy.vector_store.point_ids(document_ids=[doc_id])
    assert points == _chunk_ids(stormy, doc_id)
    assert len(points) == chunk_count
    assert stormy.vector_store.count(document_id=doc_id) == chunk_count


def test_outage_longer_than_the_budget_is_left_to_the_task_retry(
    impatient: Runtime,
    proxy: OutageProxy,
    corpus: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    calm_usage = _calm_run(impatient, corpus, tmp_path)

    name = f"outage-{uuid.uuid4().hex}.md"
    doc_id = add_file(impatient, _copy(corpus, tmp_path, name), project="stormy")
    proxy.cut_when_sent(name.encode(), restore_after_s=None)  # down until restored below
    with caplog.at_level(logging.WARNING, logger="app.retrying"):
        result = process_document(impatient, doc_id, final_attempt=False)

    assert proxy.cuts == 1
    assert result.outcome == "retrying", result.error
    assert result.error_class == "VectorStoreUnavailable"
    assert result.stage == "upsert"
    with impatient.sessions() as s:
        doc = s.get(Document, doc_id)
        assert doc is not None and doc.status == "pending"  # waits for the task's retry
        assert doc.failed_stage == "upsert"
    (attempt,) = _attempts(impatient, doc_id)
    assert attempt.outcome == "retrying"
    assert attempt.error_class == "VectorStoreUnavailable"
    assert attempt.usage == calm_usage  # the embeddings were spent once in this run
    assert _chunk_ids(impatient, doc_id) == set()
    # Retried in the process, and the budget, not the tries, ended it.
    retries = _retries_logged(caplog, doc_id)
    assert 1 <= len(retries) < impatient.settings.store_retry_attempts - 1, retries

    # The store is back: the task's retry reconnects and writes the document.
    proxy.restore()
    again = process_document(impatient, doc_id, attempt=2, final_attempt=False)
    assert again.outcome == "succeeded", again.error
    points = impatient.vector_store.point_ids(document_ids=[doc_id])
    assert points == _chunk_ids(impatient, doc_id) and len(points) == again.chunks > 0
    assert [a.outcome for a in _attempts(impatient, doc_id)] == ["retrying", "succeeded"]
