"""In-process ingest of many documents with the model kept busy (``docvec ingest``, ``eval``).

Running :func:`~app.pipeline.process.process_document` on one document after another leaves the
model idle while each document is claimed, read, extracted (in a child process) and chunked, and
sends a partial batch at the end of every document. :func:`process_many` runs the same two halves
of the pipeline, overlapped:

- a *preparer* thread runs :func:`~app.pipeline.process.prepare_document` on the documents in
  order and hands them over through a queue bounded in chunks and documents (so the texts held
  in memory stay bounded: about ``lookahead_batches`` batches, or one long document);
- the calling thread takes every document that is ready, up to ``batch_size`` chunks when it can
  fill a batch without waiting, embeds their chunks in one call (so small documents share
  batches), and writes each document as DESIGN §2 requires: points first, then one SQL
  transaction, under the document's row lock and generation check.

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
from collections.abc import Callable, Iterable, Iterator
from typing import Final

from app.pipeline.parts import PipelineParts
from app.pipeline.process import (
    PreparedDocument,
    ProcessResult,
    complete_documents,
    prepare_document,
)

__all__ = ["process_many"]

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


def process_many(
    parts: PipelineParts,
    jobs: Iterable[tuple[uuid.UUID, int | None]],
    *,
    on_chunks: Callable[[int], None] | None = None,
    on_started: Callable[[uuid.UUID], None] | None = None,
    lookahead_batches: int = LOOKAHEAD_BATCHES,
) -> Iterator[ProcessResult]:
    """Vectorize ``jobs`` (``(document_id, generation)`` pairs) in order; yield each result.

    Results come in the order of ``jobs``, each as soon as its document is written. This run is
    always the final attempt (no retries in-process: a transient error fails the document, and
    ``docvec ingest --retry-failed`` runs it again).

    Args:
        parts: the process's parts; its provider is loaded in the calling thread.
        jobs: documents to process and the generation each was queued for (None: current).
        on_chunks: progress callback, called with the number of chunks of each embedded batch.
        on_started: called with a document's id when its chunks go to the model.
        lookahead_batches: chunks the preparer may hold ready, in units of the provider's
            ``batch_size`` (>= 1); at most :data:`LOOKAHEAD_DOCUMENTS` documents.

    Raises:
        DatabaseUnavailable: the database could not record a claim or an outcome (processing
            stops; documents already yielded are done).
    """
    batch_size = parts.provider.batch_size  # load the model here, before the preparer competes
    ready = _Handoff(max(1, lookahead_batches) * batch_size, LOOKAHEAD_DOCUMENTS)

    def prepare_all() -> None:
        try:
            for document_id, generation in jobs:
                if ready.closed:
                    return
                item = prepare_document(parts, document_id, generation)
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
                try:  # add what is already prepared, but never idle the model to wait
                    item = ready.get(block=False)
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
