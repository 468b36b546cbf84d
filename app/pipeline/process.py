"""The one pipeline function: extract → chunk → embed → upsert points → one SQL transaction.

Called by the Celery task and by the in-process mode (``docvec ingest``), so both run the same code.
It never imports Celery or FastAPI: it returns a :class:`ProcessResult` whose ``outcome`` tells the
caller whether to retry.

Guarantees (DESIGN §2):
1. Vector store first, SQL second: points are upserted, stale points deleted, and only then are the
   chunk rows replaced and the document marked ``vectorized``, in one transaction.
2. Point ids are ``uuid5(document_id:chunk_index)``: re-runs overwrite, never add.
3. One run wins: each run carries the document's ``generation``; the commit phase locks the document
   row (``SELECT … FOR UPDATE``), and a run whose generation is no longer current, or that finds the
   document already vectorized for it, writes nothing — not to SQL and not to the vector store.
4. One index: a run resolves its project's active index version once, at the claim, and chunks,
   embeds and writes with that version's chunker, provider and collection; its commit records the
   document in that version and, under a share lock on the project row, checks that the version
   is still the active one (an activation in between makes the run retry on the new one).
5. Images (README, Images): when that version has an image model, an image upload's pages are
   also pictured by the extraction child and embedded by the image model, and their points
   (``image_point_id(document, page)``) are written to the version's image collection in the same
   write as the chunks' points, before the SQL transaction. An image in which OCR found no text
   then has no chunks and is found by what it shows; without an image model it fails as empty.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import OperationalError

from app import indexes, metrics
from app.db.models import (
    AttemptOutcome,
    Document,
    DocumentChunk,
    DocumentStatus,
    IndexState,
    IndexVersion,
    Project,
    VectorizationAttempt,
    utcnow,
)
from app.db.session import session_scope
from app.embeddings import EmbeddingUsage, Vectors
from app.errors import (
    DatabaseUnavailable,
    DocvecError,
    EmptyDocument,
    IndexMismatch,
    PermanentError,
    TransientError,
    VectorStoreLocked,
    VectorStoreUnavailable,
)
from app.pipeline.budget import ExtractBudget, extract_within_budget
from app.pipeline.chunk import Chunk
from app.pipeline.extract import ExtractedText
from app.pipeline.parts import IndexParts, PipelineParts
from app.pipeline.reuse import Embedded, embed_reusing, text_hash, version_lookup
from app.retrying import retry_call
from app.vectorstore import Point, image_point_id, point_id

log = logging.getLogger(__name__)

#: Largest error text stored per document; longer reasons are cut (the full one is in the logs).
MAX_ERROR_CHARS = 2000


class RunOutcome(StrEnum):
    """How one run ended, as its caller sees it: the attempt outcomes a run records, plus
    ``skipped`` (nothing to do: the document was deleted, superseded before the claim, or already
    vectorized for this generation; no attempt row is written)."""

    succeeded = AttemptOutcome.succeeded.value
    retrying = AttemptOutcome.retrying.value
    failed = AttemptOutcome.failed.value
    superseded = AttemptOutcome.superseded.value
    skipped = "skipped"


@dataclass
class ProcessResult:
    """How one run of :func:`process_document` ended (``outcome``: a :class:`RunOutcome`)."""

    document_id: uuid.UUID
    outcome: RunOutcome
    chunks: int = 0
    error: str | None = None
    stage: str | None = None
    retry_after_s: float | None = None
    #: Name of the error tree class that ended the run (failed or retrying).
    error_class: str | None = None
    #: The embedding provider's name, for the metrics (succeeded runs).
    provider: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Claim:
    attempt_id: uuid.UUID
    generation: int
    storage_uri: str
    file_name: str
    project_id: uuid.UUID
    #: The project's active index version, resolved once for the whole run.
    version: indexes.VersionRef | None
    #: Why the process may not write to that version (its settings describe another index).
    refusal: IndexMismatch | None = None


class _Superseded(Exception):
    """Internal: a newer run owns the document."""


class IndexSwitched(TransientError):
    """The project's active index version changed during the run: it is retried on the new one
    (its vectors, made by the old version's model, must not be recorded as the new version's)."""


def _worker_name() -> str:
    return socket.gethostname()


def process_document(
    parts: PipelineParts,
    document_id: uuid.UUID,
    generation: int | None = None,
    *,
    task_id: str | None = None,
    attempt: int = 1,
    final_attempt: bool = True,
    on_chunks: Callable[[int], None] | None = None,
) -> ProcessResult:
    """Vectorize one document: :func:`prepare_document`, then :func:`complete_documents`.

    Args:
        parts: the process's parts (see :class:`app.pipeline.parts.PipelineParts`).
        document_id: the document to process.
        generation: the generation the job was enqueued for; ``None`` takes the current one.
        task_id / attempt: recorded on the attempt row.
        final_attempt: if True, a transient error fails the document instead of asking for a retry.
        on_chunks: progress callback, called with the number of chunks embedded per batch.

    Returns:
        ProcessResult with outcome ``succeeded``, ``retrying`` (caller retries later), ``failed``,
        ``superseded`` or ``skipped``.

    Raises:
        DatabaseUnavailable: the database could not record the outcome (the caller retries).
    """
    prepared = prepare_document(
        parts,
        document_id,
        generation,
        task_id=task_id,
        attempt=attempt,
        final_attempt=final_attempt,
    )
    if isinstance(prepared, ProcessResult):
        return prepared
    return complete_documents(parts, [prepared], on_chunks=on_chunks)[0]


@dataclass
class PreparedDocument:
    """The first half of a run: a claimed document, read, extracted and chunked, not yet embedded.

    Holds the document's text and chunks (characters of text, not bytes of the file: the file's
    bytes are dropped once extracted). :func:`complete_documents` embeds and writes it.
    """

    document_id: uuid.UUID
    claim: _Claim
    extracted: ExtractedText
    chunks: list[Chunk]
    final_attempt: bool
    timings: dict[str, float] = field(default_factory=dict)
    usage: EmbeddingUsage = field(default_factory=EmbeddingUsage)
    #: The index version the run writes to (provider, store, chunker).
    index: IndexParts | None = None


def prepare_document(
    parts: PipelineParts,
    document_id: uuid.UUID,
    generation: int | None = None,
    *,
    task_id: str | None = None,
    attempt: int = 1,
    final_attempt: bool = True,
) -> PreparedDocument | ProcessResult:
    """Claim, read, extract (in a budgeted child process) and chunk one document.

    Touches neither the embedding provider nor the vector store, so it may run in another thread
    while earlier documents embed (``docvec ingest`` does: :mod:`app.pipeline.ingest`).

    Returns:
        A :class:`PreparedDocument` to pass to :func:`complete_documents`, or the final
        :class:`ProcessResult` when the run ends here (``skipped``, or ``failed`` / ``retrying``
        at stage read, extract or chunk).

    Raises:
        DatabaseUnavailable: the database could not record the claim or the outcome.
    """
    timings: dict[str, float] = {}
    try:
        claimed = _claim(parts, document_id, generation, task_id=task_id, attempt=attempt)
    except OperationalError as exc:
        raise DatabaseUnavailable(f"database unavailable: {exc.orig}") from exc
    if claimed is None:
        return _observed(parts, ProcessResult(document_id, RunOutcome.skipped))

    stage = "read"
    usage = EmbeddingUsage()
    index: IndexParts | None = None
    try:
        if claimed.refusal is not None:
            stage = "embed"
            raise claimed.refusal
        assert claimed.version is not None
        index = parts.index_parts(claimed.version)
        t = time.perf_counter()
        data = parts.storage.read(claimed.storage_uri)
        timings["read"] = _ms(t)

        stage = "extract"
        t = time.perf_counter()
        # In a child process bounded in time and memory: a hostile file fails only itself.
        extracted = extract_within_budget(data, claimed.file_name, extract_budget(parts, index))
        del data
        timings["extract"] = _ms(t)
        if extracted.ocr_ms is not None:
            # Part of "extract": the time its pages spent in OCR (rendering and Tesseract).
            timings["ocr"] = extracted.ocr_ms

        stage = "chunk"
        t = time.perf_counter()
        chunks = index.chunker.split(extracted.text)
        timings["chunk"] = _ms(t)
        if not chunks and not extracted.page_pictures:
            raise EmptyDocument("no text left after normalisation", stage="chunk")
        # The chunks hold the text now; the page map is all the write needs of the rest, so
        # the full text (a byte or more per character) is not held through embedding.
        extracted = dataclasses.replace(extracted, text="")
    except Exception as exc:
        err = _classified(parts, exc, stage, document_id)
        return _observed(
            parts,
            _fail(
                parts,
                document_id,
                claimed.attempt_id,
                err,
                stage,
                final_attempt,
                timings,
                usage,
                generation=claimed.generation,
            ),
        )
    return PreparedDocument(
        document_id, claimed, extracted, chunks, final_attempt, timings, usage, index
    )


def extract_budget(parts: PipelineParts, index: IndexParts) -> ExtractBudget:
    """The extraction budget of the settings, asking for page pictures (of at most
    ``image_embedding.max_side`` pixels a side) when the index version has an image model."""
    budget = ExtractBudget.from_settings(parts.settings)
    if index.images is None:
        return budget
    return dataclasses.replace(budget, pictures=parts.settings.image_embedding.max_side)


def embed_pictures(
    index: IndexParts, pictures: Sequence[Sequence[bytes]]
) -> list[list[list[float]]]:
    """The image vectors of each document's page pictures (one list per document, in order),
    embedded in one call; none when the version has no image model or nothing has pictures.

    Raises:
        what the image provider or the image collection raises (ProviderUnavailable,
        ProviderRejected, DimensionMismatch).
    """
    images = index.images
    if images is None or not any(pictures):
        return [[] for _ in pictures]
    images.ensure()
    flat = images.provider.embed_images([p for group in pictures for p in group])
    out: list[list[list[float]]] = []
    start = 0
    for group in pictures:
        out.append(flat[start : start + len(group)])
        start += len(group)
    return out


def complete_documents(
    parts: PipelineParts,
    docs: Sequence[PreparedDocument],
    *,
    on_chunks: Callable[[int], None] | None = None,
) -> list[ProcessResult]:
    """Embed the chunks of ``docs`` together, then write each document: points, then SQL.

    One :meth:`~app.embeddings.base.EmbeddingProvider.embed_documents` call takes the chunks of
    every document in order, so several small documents fill one batch (the provider cuts the
    batches). Each document is then written on its own, as DESIGN §2 requires: under its row
    lock, if its generation is still current, its points are upserted and its stale points
    deleted, and then one SQL transaction replaces its chunk rows and marks it ``vectorized``.
    An embedding error fails (or retries) every document of the call; a write error only its
    own document.

    Returns:
        One :class:`ProcessResult` per document, in the order of ``docs``.

    Raises:
        DatabaseUnavailable: the database could not record an outcome.
    """
    if not docs:
        return []
    # Documents of projects on different index versions cannot share an embed call.
    groups: dict[uuid.UUID, list[PreparedDocument]] = {}
    for d in docs:
        assert d.index is not None
        groups.setdefault(d.index.version.id, []).append(d)
    by_doc: dict[int, ProcessResult] = {}
    for group in groups.values():
        for d, r in zip(group, _complete_group(parts, group, on_chunks), strict=True):
            by_doc[id(d)] = r
    return [by_doc[id(d)] for d in docs]


def _complete_group(
    parts: PipelineParts,
    docs: Sequence[PreparedDocument],
    on_chunks: Callable[[int], None] | None,
) -> list[ProcessResult]:
    """:func:`complete_documents` for documents that share one index version."""
    assert docs[0].index is not None
    index = docs[0].index
    stage = "upsert"
    provider = index.provider
    usage = EmbeddingUsage()
    try:
        # Refuse a vector-size mismatch before paying for embeddings (DimensionMismatch is
        # permanent and names both sizes).
        index.ensure()

        stage = "embed"
        t = time.perf_counter()
        # Texts this version already holds are read back, the rest embedded once each.
        version = index.version
        embedded = embed_reusing(
            [[c.text for c in d.chunks] for d in docs],
            provider=provider,
            stored=version_lookup(
                parts.sessions,
                index.store,
                project_id=version.project_id,
                chunk_set=version.chunk_set,
            ),
            usage=usage,
            on_batch=on_chunks,
        )
        vectors = embedded.vectors
        t_images = time.perf_counter()
        pictured = embed_pictures(index, [d.extracted.page_pictures for d in docs])
        images_ms = _ms(t_images) if any(pictured) else None
    except Exception as exc:
        # The failed call's requests and retries are recorded on the attempts too.
        _charge(docs, usage, None)
        results = []
        for d in docs:
            err = _classified(parts, exc, stage, d.document_id)
            results.append(
                _observed(
                    parts,
                    _fail(
                        parts,
                        d.document_id,
                        d.claim.attempt_id,
                        err,
                        stage,
                        d.final_attempt,
                        d.timings,
                        d.usage,
                        generation=d.claim.generation,
                    ),
                )
            )
        return results
    _charge(docs, usage, _ms(t), embedded)
    if images_ms is not None:
        pictures_total = sum(len(p) for p in pictured)
        for d, own_pictures in zip(docs, pictured, strict=True):
            if own_pictures:
                # Part of "embed": the image model's share, by pictures.
                d.timings["embed_images"] = round(images_ms * len(own_pictures) / pictures_total, 2)

    results = []
    start = 0
    for d, image_vectors in zip(docs, pictured, strict=True):
        own = vectors[start : start + len(d.chunks)]
        start += len(d.chunks)
        results.append(_observed(parts, _write(parts, d, own, image_vectors)))
    return results


def _charge(
    docs: Sequence[PreparedDocument],
    usage: EmbeddingUsage,
    embed_ms: float | None,
    embedded: Embedded | None = None,
) -> None:
    """Give each document its share of one embed call: usage (and time, if it succeeded).

    With ``embedded`` (the call succeeded) a document is charged the provider inputs its chunks
    brought (a text two documents share is charged to the first) and its reused and shared
    chunks are counted; else shares follow the chunk counts.
    """
    if embedded is not None:
        total = embedded.embedded
        for i, d in enumerate(docs):
            start, end = embedded.owner_ranges[i]
            d.usage = usage.portion(start, end, total) if len(docs) > 1 else usage
            if len(docs) > 1 and total == 0:
                d.usage = EmbeddingUsage()
            d.usage.reused, d.usage.shared = embedded.reused[i], embedded.shared[i]
            if embed_ms is not None:
                own = max(end - start, 0)
                d.timings["embed"] = (
                    embed_ms if len(docs) == 1 else round(embed_ms * own / max(total, 1), 2)
                )
        return
    if len(docs) == 1:
        docs[0].usage = usage
        if embed_ms is not None:
            docs[0].timings["embed"] = embed_ms
        return
    # Shared batches: each document is charged its share of the call, by chunk count.
    total = sum(len(d.chunks) for d in docs)
    start = 0
    for d in docs:
        end = start + len(d.chunks)
        d.usage = usage.portion(start, end, total)
        if embed_ms is not None:
            d.timings["embed"] = round(embed_ms * len(d.chunks) / total, 2)
        start = end


#: First wait (seconds) of the store-write retries; each one doubles it, times a factor in
#: [0.5, 1) (app/retrying.py). The default 4 tries then wait 1-2, 2-4 and 4-8 s: 7 s at least
#: and 14 s at most, so an outage of a few seconds (a database or Qdrant restart) is outlasted
#: for sure, within DOCVEC_STORE_RETRY_BUDGET_S (20). At 0.5 s they waited 1.75-3.5 s in all,
#: and a 3 s outage cost a second embedding in 3 runs of 4 (tests/pipeline/test_store_blip.py).
STORE_RETRY_BASE_S = 2.0
#: Chunk rows per INSERT of a document's rows (one statement each, in its one transaction):
#: 4,455 rows in one statement held ~6 MiB of parameters at once, 500 hold under 1 MiB.
ROW_PAGE = 500


def chunk_row(
    chunk: Chunk,
    row_id: uuid.UUID,
    document_id: uuid.UUID,
    chunk_set: str,
    extracted: ExtractedText,
) -> dict[str, object]:
    """The ``document_chunks`` row of ``chunk`` (its id = its point's id), its page and OCR flag
    from ``extracted``'s page map (the map only: the text may already be dropped)."""
    return {
        "id": row_id,
        "document_id": document_id,
        "chunk_set": chunk_set,
        "chunk_index": chunk.index,
        "content": chunk.text,
        "content_sha256": text_hash(chunk.text),
        "start_char": chunk.start_char,
        "end_char": chunk.end_char,
        "token_count": chunk.token_count,
        "page": extracted.page_at(chunk.start_char),
        "ocr": extracted.from_ocr(chunk.start_char, chunk.end_char),
    }


def _write(
    parts: PipelineParts,
    d: PreparedDocument,
    vectors: Vectors,
    image_vectors: Sequence[Sequence[float]] = (),
) -> ProcessResult:
    """Upsert one embedded document's points (and its pages' image points), then record it in
    one SQL transaction.

    ``vectors`` is the document's float32 ``len(d.chunks)`` x ``dimension`` matrix (a slice of
    the call's); each point holds a row of it, a view, so no vector is copied before the store
    converts its upsert batch."""
    document_id, claimed, timings = d.document_id, d.claim, d.timings
    assert d.index is not None
    index = d.index
    provider, store, chunk_set = index.provider, index.store, index.version.chunk_set
    stage = "upsert"
    try:
        points = [
            Point(
                id=point_id(document_id, c.index, chunk_set),
                vector=v,
                project_id=claimed.project_id,
                document_id=document_id,
                chunk_index=c.index,
                file_name=claimed.file_name,
                # The store writes the chunk's lexical terms with its vector (app/lexical.py).
                text=c.text,
            )
            for c, v in zip(d.chunks, vectors, strict=True)
        ]
        # One point per page picture, in the version's image collection (no text: no lexical
        # side); chunk_index is the 0-based page index.
        image_points = [
            Point(
                id=image_point_id(document_id, page_index),
                vector=v,
                project_id=claimed.project_id,
                document_id=document_id,
                chunk_index=page_index,
                file_name=claimed.file_name,
            )
            for page_index, v in enumerate(image_vectors)
        ]

        def rows(start: int) -> list[dict[str, object]]:
            """The chunk rows of chunks ``[start, start + ROW_PAGE)``, made per page so that a
            long document's rows (and the driver's parameter sets) never exist all at once."""
            return [
                chunk_row(c, p.id, document_id, chunk_set, d.extracted)
                for c, p in zip(
                    d.chunks[start : start + ROW_PAGE],
                    points[start : start + ROW_PAGE],
                    strict=True,
                )
            ]

        chunk_count = len(d.chunks)

        def write() -> None:
            nonlocal stage
            stage = "upsert"
            with session_scope(parts.sessions) as session:
                doc = session.get(
                    Document, document_id, with_for_update=True, populate_existing=True
                )
                if (
                    doc is None
                    or doc.generation != claimed.generation
                    or (doc.status == DocumentStatus.vectorized)
                ):
                    raise _Superseded
                _check_still_active(session, claimed.project_id, index.version)
                t = time.perf_counter()
                store.upsert(points)
                # Points of chunk indexes the new run no longer has (the document got shorter).
                store.delete_document(document_id, from_chunk_index=len(points))
                if index.images is not None and image_points:
                    index.images.store.upsert(image_points)
                    index.images.store.delete_document(
                        document_id, from_chunk_index=len(image_points)
                    )
                timings["upsert"] = _ms(t)

                stage = "commit"
                t = time.perf_counter()
                session.execute(
                    delete(DocumentChunk).where(
                        DocumentChunk.document_id == document_id,
                        DocumentChunk.chunk_set == chunk_set,
                    )
                )
                # An image found only by what it shows has no chunk rows.
                for start in range(0, chunk_count, ROW_PAGE):
                    session.execute(insert(DocumentChunk), rows(start))
                doc.status = DocumentStatus.vectorized
                doc.error = None
                doc.failed_stage = None
                doc.chunk_count = chunk_count
                doc.page_count = d.extracted.page_count
                doc.content_type = d.extracted.content_type
                doc.embedding_model = f"{provider.name}:{provider.model}"
                doc.vectorized_at = utcnow()
                indexes.record_document(
                    session,
                    version_id=index.version.id,
                    document_id=document_id,
                    generation=claimed.generation,
                    chunks=chunk_count,
                )
                # The COMMIT itself is not in this figure: the attempt row is written in it.
                timings["commit"] = _ms(t)
                _finish_attempt(
                    session,
                    claimed.attempt_id,
                    AttemptOutcome.succeeded,
                    chunks=chunk_count,
                    timings=timings,
                    usage=d.usage,
                )

        # A store or SQL blip is retried here, with the vectors in hand: the embeddings are
        # not paid for twice (app/retrying.py). Each try re-checks the generation under the lock.
        retry_call(
            write,
            is_transient=_store_blip,
            attempts=parts.settings.store_retry_attempts,
            budget_s=parts.settings.store_retry_budget_s,
            base_s=STORE_RETRY_BASE_S,
            what=f"writing document {document_id}",
        )
        return ProcessResult(
            document_id,
            RunOutcome.succeeded,
            chunks=chunk_count,
            timings_ms=timings,
            provider=provider.name,
        )
    except _Superseded:
        _record(
            parts, claimed.attempt_id, AttemptOutcome.superseded, timings=timings, usage=d.usage
        )
        return ProcessResult(document_id, RunOutcome.superseded, timings_ms=timings)
    except Exception as exc:
        err = _classified(parts, exc, stage, document_id)
        return _fail(
            parts,
            document_id,
            claimed.attempt_id,
            err,
            stage,
            d.final_attempt,
            timings,
            d.usage,
            generation=claimed.generation,
        )


def _check_still_active(
    session: object, project_id: uuid.UUID, version: indexes.VersionRef
) -> None:
    """Raise :class:`IndexSwitched` unless ``version`` is still the project's active one.

    Holds a share lock on the project row until the commit (PostgreSQL; SQLite runs one writer
    at a time), which an activation's exclusive lock waits for: no run records a document in a
    version that stopped being active in between.
    """
    from sqlalchemy.orm import Session

    assert isinstance(session, Session)
    session.execute(select(Project.id).where(Project.id == project_id).with_for_update(read=True))
    active = session.scalar(
        select(IndexVersion.id).where(
            IndexVersion.project_id == project_id, IndexVersion.state == IndexState.active
        )
    )
    if active != version.id:
        raise IndexSwitched(
            f"the project's active index changed from {version.label()} during the run",
            stage="commit",
        )


def _store_blip(exc: BaseException) -> bool:
    """A vector-store or SQL outage worth a short retry in the process (not a lock: another
    process holds it for longer than a few seconds)."""
    if isinstance(exc, VectorStoreLocked):
        return False
    return isinstance(exc, VectorStoreUnavailable | DatabaseUnavailable | OperationalError)


def _classified(
    parts: PipelineParts, exc: Exception, stage: str, document_id: uuid.UUID
) -> DocvecError:
    """The error tree's class for ``exc``: it decides retry or fail (DESIGN §2)."""
    if isinstance(exc, parts.transient_exceptions):
        return TransientError(f"{type(exc).__name__}: {exc}", stage=stage)
    if isinstance(exc, OperationalError):
        return DatabaseUnavailable(f"database unavailable: {exc.orig}", stage=stage)
    if isinstance(exc, DocvecError):
        return exc
    # A bug or an unexpected library error (SQLAlchemyError included): permanent, logged whole.
    log.error("unexpected error processing document %s", document_id, exc_info=exc)
    return PermanentError(f"internal error: {type(exc).__name__}: {exc}", stage=stage)


def _observed(parts: PipelineParts, result: ProcessResult) -> ProcessResult:
    """Count ``result`` in the Prometheus metrics (app/metrics.py) and return it."""
    metrics.DOCUMENTS_PROCESSED.labels(str(result.outcome)).inc()
    for stage, ms in result.timings_ms.items():
        metrics.STAGE_SECONDS.labels(stage).observe(ms / 1000)
    if result.outcome == RunOutcome.succeeded:
        metrics.CHUNKS_EMBEDDED.labels(result.provider or "unknown").inc(result.chunks)
    elif result.outcome == RunOutcome.retrying:
        metrics.TASK_RETRIES.labels(result.error_class or "unknown").inc()
    elif result.outcome == RunOutcome.failed:
        metrics.TASK_FAILURES.labels(result.error_class or "unknown").inc()
    return result


def _ms(t: float) -> float:
    return round((time.perf_counter() - t) * 1000, 2)


def _claim(
    parts: PipelineParts,
    document_id: uuid.UUID,
    generation: int | None,
    *,
    task_id: str | None,
    attempt: int,
) -> _Claim | None:
    """Mark the document ``processing`` and open an attempt row; None if there is nothing to do."""
    with session_scope(parts.sessions) as session:
        doc = session.get(Document, document_id, with_for_update=True)
        if doc is None:
            log.info("document %s no longer exists; nothing to do", document_id)
            return None
        if generation is None:
            generation = doc.generation
        if doc.generation != generation:
            log.info(
                "document %s: generation %s superseded by %s",
                document_id,
                generation,
                doc.generation,
            )
            return None
        if doc.status == DocumentStatus.vectorized:
            log.info("document %s already vectorized for generation %s", document_id, generation)
            return None
        doc.status = DocumentStatus.processing
        doc.queued_at = None  # the job is off the queue: a new request queues a new one
        row = VectorizationAttempt(
            document_id=document_id,
            task_id=task_id,
            worker=_worker_name(),
            attempt=attempt,
            generation=generation,
        )
        session.add(row)
        session.flush()
        version: indexes.VersionRef | None = None
        refusal: IndexMismatch | None = None
        project = session.get(Project, doc.project_id)
        assert project is not None  # the document's foreign key
        try:
            version = indexes.active_version(session, project, parts.settings)
        except IndexMismatch as exc:
            refusal = exc
        return _Claim(
            row.id,
            generation,
            doc.storage_uri,
            doc.file_name,
            doc.project_id,
            version,
            refusal,
        )


def _finish_attempt(
    session: object,
    attempt_id: uuid.UUID,
    outcome: AttemptOutcome,
    *,
    chunks: int | None = None,
    error: str | None = None,
    stage: str | None = None,
    error_class: str | None = None,
    timings: dict[str, float] | None = None,
    usage: EmbeddingUsage | None = None,
) -> None:
    from sqlalchemy.orm import Session

    assert isinstance(session, Session)
    row = session.get(VectorizationAttempt, attempt_id)
    if row is None:
        return
    row.outcome = outcome
    row.finished_at = utcnow()
    row.chunks = chunks
    row.error = error
    row.failed_stage = stage
    row.error_class = error_class
    row.timings_ms = dict(timings or {})
    if usage is not None:
        row.usage = usage.as_dict()


def _record(
    parts: PipelineParts,
    attempt_id: uuid.UUID,
    outcome: AttemptOutcome,
    *,
    timings: dict[str, float],
    usage: EmbeddingUsage,
) -> None:
    with session_scope(parts.sessions) as session:
        _finish_attempt(session, attempt_id, outcome, timings=timings, usage=usage)


def _fail(
    parts: PipelineParts,
    document_id: uuid.UUID,
    attempt_id: uuid.UUID,
    exc: DocvecError,
    stage: str,
    final_attempt: bool,
    timings: dict[str, float],
    usage: EmbeddingUsage,
    *,
    generation: int,
) -> ProcessResult:
    """Record a run of ``generation`` that ended in ``exc``: the attempt, and the document's
    status while it still holds that generation. A run whose document got a newer generation
    meanwhile (a re-vectorize, a new version of its file, whose old file may be gone already)
    ends ``superseded``: it must not mark the newer run's document failed, nor retry."""
    stage = exc.stage or stage
    reason = str(exc)[:MAX_ERROR_CHARS]
    retry = isinstance(exc, TransientError) and not final_attempt
    outcome = AttemptOutcome.retrying if retry else AttemptOutcome.failed
    if isinstance(exc, TransientError) and not retry:
        reason = f"transient error, no retries left: {reason}"[:MAX_ERROR_CHARS]
    try:
        with session_scope(parts.sessions) as session:
            doc = session.get(Document, document_id, with_for_update=True)
            superseded = doc is not None and doc.generation != generation
            if superseded:
                outcome = AttemptOutcome.superseded
            elif doc is not None and doc.status == DocumentStatus.processing:
                # A retrying document waits in the queue, so it is pending again, not stuck.
                doc.status = DocumentStatus.pending if retry else DocumentStatus.failed
                doc.error = reason
                doc.failed_stage = stage
            _finish_attempt(
                session,
                attempt_id,
                outcome,
                error=reason,
                stage=stage,
                error_class=type(exc).__name__,
                timings=timings,
                usage=usage,
            )
    except OperationalError as db_exc:
        raise DatabaseUnavailable(f"database unavailable: {db_exc.orig}") from db_exc
    if superseded:
        log.info("document %s: a newer generation superseded this run (%s)", document_id, reason)
        return ProcessResult(document_id, RunOutcome.superseded, timings_ms=timings)
    level = logging.WARNING if retry else logging.ERROR
    log.log(level, "document %s %s at %s: %s", document_id, outcome, stage, reason)
    return ProcessResult(
        document_id,
        RunOutcome(outcome.value),
        error=reason,
        stage=stage,
        retry_after_s=getattr(exc, "retry_after_s", None),
        error_class=type(exc).__name__,
        timings_ms=timings,
    )
