"""Many documents with the model kept busy: ``docvec ingest``, ``eval``, and a worker's message
of several documents (:func:`process_batch`, the ``docvec.process_documents`` task).

Running :func:`~app.pipeline.process.process_document` on one document after another leaves the
model idle while each document is claimed, read, extracted (in a child process) and chunked, and
sends a partial batch at the end of every document. :func:`process_many` runs the same two halves
of the pipeline, overlapped:

- a *preparer* thread runs :func:`~app.pipeline.process.prepare_document` on the documents in
  order and hands them over through a queue bounded in chunks and documents (so the texts held
  in memory stay bounded: about ``lookahead_batches`` batches, or one long document);
- the calling thread takes every document that is ready, up to ``batch_size`` chunks when it can
  fill a batch without waiting (a remote provider, limited per request, waits for the preparer to
  fill it), embeds their chunks in one call (so small documents share batches), and writes each
  document as DESIGN §2 requires: points first, then one SQL transaction, under the document's
  row lock and generation check.

The model's forward passes release the GIL, as do the preparer's waits on the extraction child, so
the two threads overlap on two cores. Each document still gets exactly one attempt row and one
:class:`~app.pipeline.process.ProcessResult`; a failure stays with its document (an embedding
error with the documents of the same call).
"""

from __future__ import annotations

import queue
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy import func, select

from app.db.models import VectorizationAttempt
from app.db.session import session_scope
from app.pipeline.parts import PipelineParts
from app.pipeline.process import (
    PreparedDocument,
    ProcessResult,
    complete_documents,
    prepare_document,
)

__all__ = ["BatchResult", "JobRun", "process_batch", "process_many"]

#: Chunks the preparer may hold ready ahead of the embedder, in batches: enough to fill the next
#: batches from small documents while one embeds, and a bound on the texts held in memory.
LOOKAHEAD_BATCHES: Final = 4
#: Documents the preparer may hold ready, whatever their size (one more is being prepared).
LOOKAHEAD_DOCUMENTS: Final = 64


class _Handoff:
    """A queue from the preparer to the embedder bounded by documents *and* chunks.

    ``put`` waits while the queue is full: it holds ``max_documents`` items, or at least one item
    and ``max_chunks`` chunks (so a document longer than ``max_chunks`` still passes, alone).
    """

    def __init__(self, max_chunks: int, max_documents: int) -> None:
        self._items: deque[tuple[object, int]] = deque()
        self._chunks = 0
        self._max_chunks = max_chunks
        self._max_documents = max_documents
        self._cond = threading.Condition()
        self.closed = False

    def put(self, item: object, chunks: int = 0, *, force: bool = False) -> None:
        with self._cond:
            while not force and not self.closed and self._full():
                self._cond.wait()
            self._items.append((item, chunks))
            self._chunks += chunks
            self._cond.notify_all()

    def get(self, *, block: bool = True) -> object:
        """The next item; raises ``queue.Empty`` if there is none and ``block`` is False."""
        with self._cond:
            while not self._items:
                if not block:
                    raise queue.Empty
                self._cond.wait()
            item, chunks = self._items.popleft()
            self._chunks -= chunks
            self._cond.notify_all()
            return item

    def close(self) -> None:
        """Release a waiting ``put`` for good (the consumer has stopped)."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def _full(self) -> bool:
        n = len(self._items)
        return n >= self._max_documents or (n > 0 and self._chunks >= self._max_chunks)


class _Failed:
    """The preparer thread's exception, re-raised in the calling thread."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_DONE: Final = object()


@dataclass(frozen=True, slots=True)
class JobRun:
    """One document of :func:`process_many` with its attempt: the run's number among the runs
    of this generation (1-based, recorded on the attempt row) and whether it is the last one (a
    transient error then fails the document instead of asking for a retry)."""

    document_id: uuid.UUID
    generation: int | None
    attempt: int = 1
    final_attempt: bool = True


def process_many(
    parts: PipelineParts,
    jobs: Iterable[tuple[uuid.UUID, int | None] | JobRun],
    *,
    on_chunks: Callable[[int], None] | None = None,
    on_started: Callable[[uuid.UUID], None] | None = None,
    lookahead_batches: int = LOOKAHEAD_BATCHES,
    task_id: str | None = None,
) -> Iterator[ProcessResult]:
    """Vectorize ``jobs`` (``(document_id, generation)`` pairs or :class:`JobRun`) in order;
    yield each result.

    Results come in the order of ``jobs``, each as soon as its document is written. A pair is
    always the final attempt (no retries in-process: a transient error fails the document, and
    ``docvec ingest --retry-failed`` runs it again); a :class:`JobRun` says which attempt it is.

    Args:
        parts: the process's parts; its provider is loaded in the calling thread.
        jobs: documents to process and the generation each was queued for (None: current).
        task_id: the broker task running them, recorded on each attempt row.
        on_chunks: progress callback, called with the number of chunks of each embedded batch.
        on_started: called with a document's id when its chunks go to the model.
        lookahead_batches: chunks the preparer may hold ready, in units of the provider's
            ``batch_size`` (>= 1); at most :data:`LOOKAHEAD_DOCUMENTS` documents.

    Raises:
        DatabaseUnavailable: the database could not record a claim or an outcome (processing
            stops; documents already yielded are done).
    """
    batch_size = parts.provider.batch_size  # load the model here, before the preparer competes
    fill = parts.provider.remote
    ready = _Handoff(max(1, lookahead_batches) * batch_size, LOOKAHEAD_DOCUMENTS)

    def prepare_all() -> None:
        try:
            for job in jobs:
                if ready.closed:
                    return
                run = job if isinstance(job, JobRun) else JobRun(job[0], job[1])
                item = prepare_document(
                    parts,
                    run.document_id,
                    run.generation,
                    task_id=task_id,
                    attempt=run.attempt,
                    final_attempt=run.final_attempt,
                )
                size = len(item.chunks) if isinstance(item, PreparedDocument) else 0
                ready.put(item, size)
        except BaseException as exc:  # handed to the calling thread, which raises it
            ready.put(_Failed(exc), force=True)
        finally:
            ready.put(_DONE, force=True)

    preparer = threading.Thread(target=prepare_all, name="docvec-prepare", daemon=True)
    preparer.start()
    try:
        finished = False
        while not finished:
            group: list[PreparedDocument] = []
            chunks = 0
            item = ready.get()  # wait for at least one document
            while True:
                if item is _DONE:
                    finished = True
                    break
                if isinstance(item, _Failed):
                    raise item.exc
                if isinstance(item, ProcessResult):
                    # Ended before embedding (skipped, or failed at read/extract/chunk).
                    if group:  # keep the order of results: write what is gathered first
                        yield from _complete(parts, group, on_chunks, on_started)
                        group, chunks = [], 0
                    yield item
                else:
                    assert isinstance(item, PreparedDocument)
                    group.append(item)
                    chunks += len(item.chunks)
                if chunks >= batch_size:
                    break
                try:
                    # A local model: add what is already prepared, but never idle the model to
                    # wait. A remote provider is limited and billed per request: wait for the
                    # preparer to fill the batch (or run out of documents).
                    item = ready.get(block=fill)
                except queue.Empty:
                    break
            if group:
                yield from _complete(parts, group, on_chunks, on_started)
    finally:
        # The consumer stopped (or failed): let the preparer finish its current document and go.
        # A document it claimed but nobody embedded stays ``processing``; the next ingest of the
        # same files takes it up again.
        ready.close()
        preparer.join()


def _complete(
    parts: PipelineParts,
    group: list[PreparedDocument],
    on_chunks: Callable[[int], None] | None,
    on_started: Callable[[uuid.UUID], None] | None,
) -> Iterator[ProcessResult]:
    if on_started is not None:
        for d in group:
            on_started(d.document_id)
    yield from complete_documents(parts, group, on_chunks=on_chunks)


@dataclass
class BatchResult:
    """What :func:`process_batch` did: a result per document that ran, and the jobs it did not
    reach (the run stopped early: the database went away or the task's time ran out)."""

    results: list[ProcessResult] = field(default_factory=list)
    not_run: list[tuple[uuid.UUID, int]] = field(default_factory=list)
    #: Each job's attempt, by document id.
    runs: dict[uuid.UUID, JobRun] = field(default_factory=dict)
    #: Why the run stopped early (None: every job ran).
    stopped: BaseException | None = None


def attempt_runs(
    parts: PipelineParts, jobs: Sequence[tuple[uuid.UUID, int]], *, max_retries: int
) -> list[JobRun]:
    """Each job's :class:`JobRun`: its attempt is one more than the runs its generation already
    had (retried, abandoned by a dead worker, or interrupted), and it is final once
    ``max_retries`` of them happened (``DOCVEC_MAX_RETRIES``), as Celery's own retry count is
    for a one-document task.

    Raises:
        sqlalchemy.exc.OperationalError: the database is unreachable.
    """
    with session_scope(parts.sessions) as session:
        rows = session.execute(
            select(
                VectorizationAttempt.document_id,
                VectorizationAttempt.generation,
                func.count(),
            )
            .where(VectorizationAttempt.document_id.in_([d for d, _ in jobs]))
            .group_by(VectorizationAttempt.document_id, VectorizationAttempt.generation)
        ).all()
    runs = {(d, g): n for d, g, n in rows}
    out = []
    for document_id, generation in jobs:
        before = runs.get((document_id, generation), 0)
        out.append(JobRun(document_id, generation, before + 1, before >= max_retries))
    return out


def process_batch(
    parts: PipelineParts,
    jobs: Sequence[tuple[uuid.UUID, int]],
    *,
    max_retries: int,
    task_id: str | None = None,
) -> BatchResult:
    """Run one worker message of several documents through :func:`process_many`: their chunks
    share provider requests; each document keeps its own claim, generation check, transaction
    and attempt row (its attempt number from :func:`attempt_runs`).

    Never raises for what happens to one document (that is its result); an exception that stops
    the run (the database is unreachable, the task's soft time limit between two documents) is
    returned in ``stopped`` with the jobs it did not reach, so the caller can send them again.
    """
    result = BatchResult()
    try:
        runs = attempt_runs(parts, jobs, max_retries=max_retries)
        result.runs = {r.document_id: r for r in runs}
        for done in process_many(parts, runs, task_id=task_id):
            result.results.append(done)
    except Exception as exc:  # SoftTimeLimitExceeded and DatabaseUnavailable included
        result.stopped = exc
    finished = {r.document_id for r in result.results}
    result.not_run = [(d, g) for d, g in jobs if d not in finished]
    return result
