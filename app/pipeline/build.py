"""Building an index version in the background: re-embed what SQL holds into a new collection.

A build step (:func:`build_step`) takes the version's lease, then embeds the chunk text already
in ``document_chunks`` with the version's provider and writes the points to the version's
collection — or, when the version's chunking differs from the active one's, reads the stored
file, extracts it (in the budgeted child) and chunks it with the version's chunker. Documents
share provider calls: the step gathers the next ones until their chunks fill about one provider
batch (``provider.batch_size``) and embeds their texts in one call (:func:`embed_batch`: each
distinct text once, texts the version already holds read back), so a project of small documents
costs a request per batch, not per document. Each document is then written on its own
(:func:`write_document`) and recorded in the version (``index_version_documents``) in the
transaction that checks, under the document's row lock, that its generation is still the one
embedded; a document re-vectorized or uploaded meanwhile is found missing by the next pass, and a
deleted one is gone from every version's collection (:func:`app.services.delete_document`). So
the build catches up with whatever happens during it, and when no document is missing, a gate
compares the collection with SQL (:func:`verify`) before the version becomes ``ready`` or, with
``activate=auto``, active (:func:`app.indexes.activate`: one SQL transaction; then, on Qdrant,
one alias operation).

Faults: a worker killed mid-step loses nothing — its lease runs out and the next step (the
sweep's) resumes with the documents still missing; a document that cannot be built (its file is
gone, the provider refuses it) is recorded as a failure, which blocks activation and is shown in
the progress; a transient error ends the step for a later one to retry. A call that several
documents share and the provider refuses is made again per document, so only the document at
fault is recorded as failed, as when each document had its own call.

Images: a version with an image model also gets the image vectors of every image document — the
stored file is pictured again in the budgeted child (no OCR: the text comes from SQL) and the
pictures embedded by the version's image model, written to its image collection with the chunks'
points; the gate checks those points too. So a change of image model (CLIP's 512 dimensions to
another model's 1,536) is built beside the live version like any other model change.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from app import indexes
from app.db.models import (
    Document,
    DocumentChunk,
    DocumentStatus,
    IndexState,
    IndexVersion,
    IndexVersionDocument,
    utcnow,
)
from app.db.session import session_scope
from app.embeddings import EmbeddingUsage
from app.embeddings import Vectors as ChunkVectors
from app.errors import DocvecError, PermanentError, TransientError
from app.pipeline.budget import extract_within_budget, run_within_budget
from app.pipeline.extract import IMAGE_TYPES, pictures_of_file
from app.pipeline.parts import IndexParts, PipelineParts
from app.pipeline.process import chunk_row, embed_pictures, extract_budget
from app.pipeline.reuse import embed_reusing, version_lookup
from app.vectorstore import Point, image_point_id, point_id

log = logging.getLogger(__name__)

#: Documents fetched per query of the missing ones (at least one provider batch of them): they
#: share provider calls, and each is written on its own.
PAGE = 64


@dataclass
class StepResult:
    """What one build step did: documents built and failed, whether documents remain, and the
    version's state at the end (``building``, ``ready``, ``active``, or ``busy``: another step
    holds the lease; ``gone``: cancelled, failed or dropped)."""

    built: int = 0
    failed: int = 0
    remaining: bool = False
    state: str = IndexState.building
    activated: bool = False
    problems: list[str] = field(default_factory=list)


def take_lease(sessions: sessionmaker[Session], version_id: uuid.UUID, lease_s: float) -> bool:
    """Hold the build of ``version_id`` for ``lease_s`` seconds unless another step holds it.

    One conditional UPDATE, so two workers never both believe they hold it.
    """
    now = utcnow()
    with session_scope(sessions) as session:
        result = session.execute(
            update(IndexVersion)
            .where(
                IndexVersion.id == version_id,
                IndexVersion.state == IndexState.building,
                (IndexVersion.lease_until.is_(None)) | (IndexVersion.lease_until < now),
            )
            .values(lease_until=now + timedelta(seconds=lease_s))
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


def _renew(sessions: sessionmaker[Session], version_id: uuid.UUID, lease_s: float) -> bool:
    with session_scope(sessions) as session:
        result = session.execute(
            update(IndexVersion)
            .where(IndexVersion.id == version_id, IndexVersion.state == IndexState.building)
            .values(lease_until=utcnow() + timedelta(seconds=lease_s))
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


def _release(sessions: sessionmaker[Session], version_id: uuid.UUID) -> None:
    with session_scope(sessions) as session:
        session.execute(
            update(IndexVersion).where(IndexVersion.id == version_id).values(lease_until=None)
        )


def build_step(
    parts: PipelineParts,
    version_id: uuid.UUID,
    *,
    budget_s: float,
    lease_s: float = 120.0,
    on_document: Callable[[int, int], None] | None = None,
    keep_versions: int = 1,
) -> StepResult:
    """Build documents of the version until none is missing or ``budget_s`` seconds passed.

    The documents are taken in batches of about one provider batch of chunks, embedded in one
    call (:func:`embed_batch`) and written one by one (:func:`write_document`). The budget is
    looked at before each batch and while one is gathered, so a step ends at most one provider
    call (and its documents' writes) after it: what a call embedded is written, not dropped.

    Args:
        parts: the process's parts (:meth:`PipelineParts.index_parts` gives the version's).
        version_id: the version to build (state ``building``).
        budget_s: seconds of work in this step (a Celery task sizes it under its time limit and
            sends another step when documents remain).
        lease_s: seconds the step holds the build: renewed before each provider call and after
            each document, so it must outlast one call.
        on_document: progress callback ``(built, failed)`` after each document.
        keep_versions: retired versions kept after an activation here (older ones dropped).

    Returns:
        A :class:`StepResult`.

    Raises:
        TransientError: the provider, the store or the database is unavailable (the lease is
            released: a later step retries).
    """
    result = StepResult()
    if not take_lease(parts.sessions, version_id, lease_s):
        with session_scope(parts.sessions) as session:
            row = session.get(IndexVersion, version_id)
            result.state = (
                "busy"
                if row is not None and row.state == IndexState.building
                else (row.state if row is not None else "gone")
            )
        return result

    def settle(ok: bool | None) -> None:
        """Count one document's outcome and renew the lease.

        Raises:
            _Gone: the version stopped building (cancelled meanwhile).
        """
        if ok is True:
            result.built += 1
        elif ok is False:
            result.failed += 1
        if on_document is not None:
            on_document(result.built, result.failed)
        if not _renew(parts.sessions, version_id, lease_s):
            raise _Gone

    try:
        with session_scope(parts.sessions) as session:
            row = session.get(IndexVersion, version_id)
            assert row is not None
            index = parts.index_parts(indexes.VersionRef.of(row))
        index.ensure()
        deadline = time.monotonic() + budget_s
        batch_chunks = index.provider.batch_size
        while True:
            with session_scope(parts.sessions) as session:
                row = session.get(IndexVersion, version_id)
                if row is None or row.state != IndexState.building:
                    result.state = row.state if row is not None else "gone"
                    return result
                active = indexes.active_version_or_none(session, row.project_id)
                active_set = active.chunk_set if active is not None else ""
                # At least one batch of one-chunk documents per page, whatever the batch size.
                page = indexes.missing_documents(session, row, limit=max(PAGE, batch_chunks))
            if not page:
                break
            todo = deque(page)
            held: BuildInput | None = None
            while todo or held is not None:
                if time.monotonic() > deadline:
                    result.remaining = True
                    return result
                batch, held = _gather(
                    parts,
                    index,
                    todo,
                    held,
                    active_set=active_set,
                    batch_chunks=batch_chunks,
                    deadline=deadline,
                    settle=settle,
                )
                if not batch:
                    continue
                if not _renew(parts.sessions, version_id, lease_s):  # held through the call
                    raise _Gone
                for prepared, vectors in zip(batch, embed_batch(parts, index, batch), strict=True):
                    settle(
                        write_document(parts, index, prepared, *vectors)
                        if vectors is not None
                        else False
                    )
        result.problems = verify(parts, index)
        if result.problems:
            # Documents whose points are not all there are built again by the next pass.
            result.remaining = True
            return result
        result.state, result.activated = _finish(parts, version_id, keep_versions)
        result.remaining = result.state == IndexState.building
        return result
    except _Gone:
        result.state = "gone"  # cancelled meanwhile
        return result
    finally:
        _release(parts.sessions, version_id)


class _Gone(Exception):
    """Internal: the version stopped building during the step (its lease could not be renewed)."""


def _gather(
    parts: PipelineParts,
    index: IndexParts,
    todo: deque[tuple[uuid.UUID, int]],
    held: BuildInput | None,
    *,
    active_set: str,
    batch_chunks: int,
    deadline: float,
    settle: Callable[[bool | None], None],
) -> tuple[list[BuildInput], BuildInput | None]:
    """The documents of the next provider call: ``held`` (left over from the last one), then
    the next of ``todo``, read (:func:`read_document`) until their chunks fill a batch of
    ``batch_chunks``; past it, only those that fit in the room the call's last request has left
    (the provider cuts a call into requests of ``batch_size``), so no call ends in a needless
    short request. A call then holds about one batch of texts, or one long document's. Gathering
    stops at ``deadline``; a document that failed or changed is ``settle``-d at once.

    Returns:
        The call's documents (possibly none) and the document read for the next call, if any.

    Raises:
        TransientError: from :func:`read_document`.
        _Gone: from ``settle``.
    """
    batch = [held] if held is not None else []
    chunks = sum(len(b.texts) for b in batch)
    while todo and (chunks < batch_chunks or chunks % batch_chunks):
        if time.monotonic() > deadline:
            break
        document_id, generation = todo.popleft()
        prepared = read_document(parts, index, document_id, generation, active_set=active_set)
        if not isinstance(prepared, BuildInput):
            settle(prepared)
            continue
        size = len(prepared.texts)
        if chunks >= batch_chunks and size > -chunks % batch_chunks:
            return batch, prepared  # it would add a request: the next call's
        batch.append(prepared)
        chunks += size
    return batch, None


@dataclass
class BuildInput:
    """One document read for the build and not yet embedded: its chunks' texts in chunk order
    (``chunk_indexes[i]`` is the chunk index of ``texts[i]``), the chunk rows to write when the
    version chunks anew (None: the rows in SQL are the version's), and its page pictures when
    the version has an image model (empty otherwise)."""

    document_id: uuid.UUID
    generation: int
    project_id: uuid.UUID
    file_name: str
    chunk_indexes: list[int]
    texts: list[str]
    new_rows: list[dict[str, object]] | None = None
    pictures: tuple[bytes, ...] = ()


#: A document's vectors from :func:`embed_batch`: its chunks' (float32, ``len(texts)`` x
#: dimension) and its pictures' (pages x the image model's dimension).
Vectors = tuple[ChunkVectors, list[list[float]]]


def build_document(
    parts: PipelineParts,
    index: IndexParts,
    document_id: uuid.UUID,
    generation: int,
    *,
    active_set: str,
) -> bool | None:
    """Put one document, at ``generation``, into the version ``index``, in a call of its own
    (:func:`build_step` shares calls between documents).

    Returns True when built, False when it failed for good (recorded with its reason), None when
    it changed meanwhile (a newer generation or deleted: the next pass sees it again, or not).

    Raises:
        TransientError: retry later (the caller's step ends).
    """
    prepared = read_document(parts, index, document_id, generation, active_set=active_set)
    if not isinstance(prepared, BuildInput):
        return prepared
    (vectors,) = embed_batch(parts, index, [prepared])
    if vectors is None:
        return False
    return write_document(parts, index, prepared, *vectors)


def read_document(
    parts: PipelineParts,
    index: IndexParts,
    document_id: uuid.UUID,
    generation: int,
    *,
    active_set: str,
) -> BuildInput | bool | None:
    """Read one document for the build: its chunk texts from SQL, or — when the version's
    chunking is not the active one's (``active_set``) — its stored file extracted (in the
    budgeted child) and chunked again; and the page pictures of an image document when the
    version has an image model.

    Returns:
        A :class:`BuildInput`; False when it failed for good (recorded with its reason); None
        when it is no longer vectorized at ``generation``.

    Raises:
        TransientError: retry later (the caller's step ends).
    """
    version = index.version
    chunk_set = version.chunk_set
    with session_scope(parts.sessions) as session:
        doc = session.get(Document, document_id)
        if doc is None or doc.generation != generation or doc.status != DocumentStatus.vectorized:
            return None
        file_name, project_id, uri = doc.file_name, doc.project_id, doc.storage_uri
        pictured = index.images is not None and doc.content_type in IMAGE_TYPES
        rows: list[tuple[int, str]] = []
        if chunk_set == active_set:
            rows = [
                (c.chunk_index, c.content)
                for c in session.scalars(
                    select(DocumentChunk)
                    .where(
                        DocumentChunk.document_id == document_id,
                        DocumentChunk.chunk_set == chunk_set,
                    )
                    .order_by(DocumentChunk.chunk_index)
                )
            ]
    prepared = BuildInput(document_id, generation, project_id, file_name, [], [])
    try:
        if chunk_set != active_set:
            # Another chunking: the stored file is read, extracted and chunked again.
            data = parts.storage.read(uri)
            extracted = extract_within_budget(data, file_name, extract_budget(parts, index))
            del data
            prepared.pictures = extracted.page_pictures
            chunks = index.chunker.split(extracted.text)
            prepared.new_rows = [
                chunk_row(
                    c, point_id(document_id, c.index, chunk_set), document_id, chunk_set, extracted
                )
                for c in chunks
            ]
            rows = [(c.index, c.text) for c in chunks]
        elif pictured:
            prepared.pictures = _pictures(parts, uri, file_name)
    except Exception as exc:
        _fail(parts, index, prepared, exc)
        return False
    prepared.chunk_indexes = [i for i, _ in rows]
    prepared.texts = [t for _, t in rows]
    return prepared


def embed_batch(
    parts: PipelineParts, index: IndexParts, batch: Sequence[BuildInput]
) -> list[Vectors | None]:
    """The vectors of ``batch``'s documents, their chunks embedded in one provider call (the
    provider cuts it into requests of ``batch_size``) and their pictures in one image call.

    Each distinct text is embedded once, and texts the version already holds are read back
    from its own collection (:func:`app.pipeline.reuse.embed_reusing`, as
    :func:`app.pipeline.process.complete_documents` does). When the call fails for a reason
    retrying cannot fix, each document of a shared call is embedded again on its own, so only
    the one at fault fails.

    Returns:
        Per document, in order, its :data:`Vectors`, or None when it failed for good (recorded
        with its reason).

    Raises:
        TransientError: retry later (the caller's step ends; nothing of the batch is written).
    """
    version = index.version
    try:
        texts = [b.texts for b in batch]
        # No text at all (image documents only): a 0-row matrix, and no provider call.
        vectors = embed_reusing(
            texts,
            provider=index.provider,
            stored=version_lookup(
                parts.sessions,
                index.store,
                project_id=version.project_id,
                chunk_set=version.chunk_set,
            ),
            usage=EmbeddingUsage(),
        ).vectors
        pictured = embed_pictures(index, [b.pictures for b in batch])
    except Exception as exc:
        if len(batch) == 1 or _transient(parts, exc):
            _fail(parts, index, batch[0], exc)  # raises TransientError when transient
            return [None]
        log.info(
            "a call of %d documents into %s failed (%s): embedding each on its own",
            len(batch),
            version.label(),
            exc,
        )
        return [v for b in batch for v in embed_batch(parts, index, [b])]
    out: list[Vectors | None] = []
    start = 0
    for b, image_vectors in zip(batch, pictured, strict=True):
        out.append((vectors[start : start + len(b.texts)], image_vectors))
        start += len(b.texts)
    return out


def write_document(
    parts: PipelineParts,
    index: IndexParts,
    prepared: BuildInput,
    vectors: ChunkVectors,
    image_vectors: Sequence[list[float]],
) -> bool | None:
    """Write one embedded document into the version: under the document's row lock, if it is
    still vectorized at the generation read and the version still building or ready, upsert its
    points (and image points), delete its stale ones, replace its chunk rows when the version
    chunks anew, and record it in the version — one SQL transaction.

    Returns:
        True when written; None when the document or the version changed meanwhile (nothing
        written).

    Raises:
        Whatever the store or the database raises (the caller's step ends).
    """
    version = index.version
    chunk_set = version.chunk_set
    document_id, generation = prepared.document_id, prepared.generation
    points = [
        Point(
            id=point_id(document_id, chunk_index, chunk_set),
            vector=v,
            project_id=prepared.project_id,
            document_id=document_id,
            chunk_index=chunk_index,
            file_name=prepared.file_name,
            text=text,
        )
        for chunk_index, text, v in zip(
            prepared.chunk_indexes, prepared.texts, vectors, strict=True
        )
    ]
    image_points = [
        Point(
            id=image_point_id(document_id, page_index),
            vector=v,
            project_id=prepared.project_id,
            document_id=document_id,
            chunk_index=page_index,
            file_name=prepared.file_name,
        )
        for page_index, v in enumerate(image_vectors)
    ]
    with session_scope(parts.sessions) as session:
        doc = session.get(Document, document_id, with_for_update=True, populate_existing=True)
        if doc is None or doc.generation != generation or doc.status != DocumentStatus.vectorized:
            return None
        live = session.get(IndexVersion, version.id)
        if live is None or live.state not in (IndexState.building, IndexState.ready):
            return None
        index.store.upsert(points)
        index.store.delete_document(document_id, from_chunk_index=len(points))
        if index.images is not None and image_points:
            index.images.store.upsert(image_points)
            index.images.store.delete_document(document_id, from_chunk_index=len(image_points))
        if prepared.new_rows is not None:
            session.execute(
                delete(DocumentChunk).where(
                    DocumentChunk.document_id == document_id, DocumentChunk.chunk_set == chunk_set
                )
            )
            if prepared.new_rows:
                session.execute(insert(DocumentChunk), prepared.new_rows)
        indexes.record_document(
            session,
            version_id=version.id,
            document_id=document_id,
            generation=generation,
            chunks=len(points),
        )
    return True


def _fail(parts: PipelineParts, index: IndexParts, prepared: BuildInput, exc: Exception) -> None:
    """Record ``exc`` as the document's failure in the version — or, for a transient error (or
    one of ``parts.transient_exceptions``: a worker's soft time limit), raise it as a
    :class:`TransientError`, since it is no fault of the document.

    Raises:
        TransientError: ``exc`` is transient.
    """
    if isinstance(exc, TransientError):
        raise exc
    if _transient(parts, exc):
        raise TransientError(f"{type(exc).__name__}: {exc}") from exc
    version = index.version
    if not isinstance(exc, DocvecError):
        # A bug or an unexpected library error fails this document only.
        log.error(
            "building document %s into %s", prepared.document_id, version.label(), exc_info=exc
        )
        exc = PermanentError(str(exc))
    _record_failure(parts, version.id, prepared.document_id, prepared.generation, exc)


def _transient(parts: PipelineParts, exc: BaseException) -> bool:
    """Whether ``exc`` is no fault of the documents: the error tree's transient branch, or one
    of ``parts.transient_exceptions`` (a worker's soft time limit)."""
    return isinstance(exc, (TransientError, *parts.transient_exceptions))


def _pictures(parts: PipelineParts, uri: str, file_name: str) -> tuple[bytes, ...]:
    """The page pictures of a stored image file, made in the budgeted child (no OCR)."""
    settings = parts.settings
    data = parts.storage.read(uri)
    result = run_within_budget(
        pictures_of_file,
        data,
        file_name,
        max_side=settings.image_embedding.max_side,
        max_pixels=settings.ocr.max_image_pixels,
        max_pages=settings.ocr.max_pages,
        timeout_s=settings.extract_timeout_s,
        memory_mb=settings.extract_memory_mb,
    )
    assert isinstance(result, tuple)
    return result


def _record_failure(
    parts: PipelineParts,
    version_id: uuid.UUID,
    document_id: uuid.UUID,
    generation: int,
    exc: DocvecError,
) -> None:
    with session_scope(parts.sessions) as session:
        if session.get(Document, document_id) is None:
            return
        indexes.record_document(
            session,
            version_id=version_id,
            document_id=document_id,
            generation=generation,
            chunks=0,
            error=f"{type(exc).__name__}: {exc}"[:2000],
        )


def verify(parts: PipelineParts, index: IndexParts) -> list[str]:
    """The gate before activation: every document the version holds has exactly its points in
    the version's collection. A document found short (or with extra points) loses its record, so
    the next pass builds it again; extra points are deleted. Returns what was wrong (empty:
    clean)."""
    version = index.version
    with session_scope(parts.sessions) as session:
        held = dict(
            session.execute(
                select(IndexVersionDocument.document_id, IndexVersionDocument.chunks).where(
                    IndexVersionDocument.version_id == version.id,
                    IndexVersionDocument.error.is_(None),
                )
            ).all()
        )
    if not held:
        return []
    expected = {
        point_id(doc, i, version.chunk_set) for doc, n in held.items() for i in range(int(n))
    }
    actual = index.store.point_ids(document_ids=held)
    missing = expected - actual
    extra = actual - expected
    problems: list[str] = []
    if extra:
        index.store.delete_points(extra)
        problems.append(f"{len(extra)} extra points deleted")
    short = {
        doc
        for doc, n in held.items()
        for i in range(int(n))
        if point_id(doc, i, version.chunk_set) in missing
    }
    short |= _verify_images(parts, index, set(held), problems)
    if short:
        with session_scope(parts.sessions) as session:
            session.execute(
                delete(IndexVersionDocument).where(
                    IndexVersionDocument.version_id == version.id,
                    IndexVersionDocument.document_id.in_(short),
                )
            )
        problems.append(f"points missing in {len(short)} documents: rebuilding")
    return problems


def _verify_images(
    parts: PipelineParts, index: IndexParts, held: set[uuid.UUID], problems: list[str]
) -> set[uuid.UUID]:
    """The gate's image half: every image document the version holds has one image point per
    page (``page_count``) in the image collection; extra ones are deleted. Returns the documents
    short of points."""
    if index.images is None or not held:
        return set()
    with session_scope(parts.sessions) as session:
        pages = {
            doc_id: int(count or 0)
            for doc_id, count in session.execute(
                select(Document.id, Document.page_count).where(
                    Document.id.in_(held), Document.content_type.in_(sorted(IMAGE_TYPES))
                )
            ).all()
        }
    expected = {image_point_id(doc, i) for doc, n in pages.items() for i in range(n)}
    actual = index.images.store.point_ids(document_ids=held)
    extra = actual - expected
    if extra:
        index.images.store.delete_points(extra)
        problems.append(f"{len(extra)} extra image points deleted")
    missing = expected - actual
    return {doc for doc, n in pages.items() for i in range(n) if image_point_id(doc, i) in missing}


def _finish(parts: PipelineParts, version_id: uuid.UUID, keep_versions: int) -> tuple[str, bool]:
    """The build is complete and verified: ``ready``, or active when ``activate=auto``."""
    with session_scope(parts.sessions) as session:
        row = session.get(IndexVersion, version_id)
        if row is None or row.state != IndexState.building:
            return (row.state if row is not None else "gone"), False
        state = indexes.progress(session, row)
        if state.failures:
            first = session.scalar(
                select(IndexVersionDocument.error).where(
                    IndexVersionDocument.version_id == version_id,
                    IndexVersionDocument.error.is_not(None),
                )
            )
            row.state = IndexState.failed
            row.error = f"{state.failures} document(s) could not be built; first: {first}"
            row.lease_until = None
            return IndexState.failed, False
        if not state.complete:
            return IndexState.building, False
        row.built_at = utcnow()
        if row.activate != "auto":
            row.state = IndexState.ready
            return IndexState.ready, False
    activate_version(parts, version_id, keep_versions=keep_versions)
    return IndexState.active, True


def activate_version(parts: PipelineParts, version_id: uuid.UUID, *, keep_versions: int) -> None:
    """Activate a complete version: one SQL transaction, then the Qdrant alias, then the
    versions beyond ``keep_versions`` retired ones dropped.

    Raises:
        indexes.VersionConflict: the version is not complete.
    """
    with session_scope(parts.sessions) as session:
        row = session.get(IndexVersion, version_id)
        if row is None:
            raise LookupError(f"index version {version_id} not found")
        indexes.activate(session, row)
        ref = indexes.VersionRef.of(row)
        project_id = row.project_id
    store = parts.store_for(ref.collection)
    try:
        store.point_alias(f"{parts.settings.collection}_{project_id.hex[:12]}")
    except DocvecError as exc:  # SQL decided; the alias is for other readers of the store
        log.warning("index %s active, but its alias was not switched: %s", ref.label(), exc)
    with session_scope(parts.sessions) as session:
        old = indexes.versions_to_drop(session, project_id, keep=keep_versions)
        refs = [indexes.VersionRef.of(v) for v in old]
    for r in refs:
        drop_version(parts, r)


def drop_version(parts: PipelineParts, ref: indexes.VersionRef) -> None:
    """Remove a version that is not active: its points (its collection, or its project's points
    when the collection is shared), its chunk rows if no other version reads them, its row.

    Raises:
        indexes.VersionConflict: the version is active.
    """
    with session_scope(parts.sessions) as session:
        row = session.get(IndexVersion, ref.id)
        if row is None:
            return
        if row.state == IndexState.active:
            raise indexes.VersionConflict(
                f"index version {row.version} is active: activate another one first"
            )
        # Out of reach first (SQL), then the points: a crash in between leaves only points
        # that no version names, which nothing searches.
        shared = indexes.shares_collection(session, row)
        drop_rows = ref.chunk_set != "" and not indexes.chunk_set_in_use(
            session, ref.project_id, ref.chunk_set, ref.id
        )
        if drop_rows:
            session.execute(
                delete(DocumentChunk).where(
                    DocumentChunk.chunk_set == ref.chunk_set,
                    DocumentChunk.document_id.in_(
                        select(Document.id).where(Document.project_id == ref.project_id)
                    ),
                )
            )
        session.delete(row)
    for collection in (ref.collection, ref.image_collection):
        if collection is None:
            continue
        store = parts.store_for(collection)
        if shared:
            store.delete_project(ref.project_id)
        else:
            store.drop_collection()


def run_build(
    parts: PipelineParts,
    version_id: uuid.UUID,
    *,
    keep_versions: int,
    lease_s: float = 120.0,
    on_document: Callable[[int, int], None] | None = None,
    max_passes: int = 20,
) -> StepResult:
    """Build the version here until it is ``ready``/``active`` or stopped (``docvec index
    create`` without workers, and in tests): build steps one after the other.

    ``max_passes`` bounds the passes that find documents changed under them (a project under a
    constant stream of uploads), so the command ends; the version then stays ``building`` and a
    later step (another run, or a worker's) goes on.

    Raises:
        TransientError: the provider, store or database is unavailable.
    """
    total = StepResult()
    for _ in range(max_passes):
        step = build_step(
            parts,
            version_id,
            budget_s=float("inf"),
            lease_s=lease_s,
            on_document=on_document,
            keep_versions=keep_versions,
        )
        total.built += step.built
        total.failed += step.failed
        total.problems += step.problems
        total.state, total.activated, total.remaining = step.state, step.activated, step.remaining
        if not step.remaining:
            break
    return total
