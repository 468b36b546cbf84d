"""Operations shared by the API and the CLI: projects, uploads, re-vectorize, delete, search.

Keyword-only functions over a SQLAlchemy session and the runtime's parts. Functions that decide a
document needs a run return its :data:`Job`; the caller records it in the outbox in the same
transaction (:func:`app.outbox.put_jobs`) and publishes after the commit, or runs it in-process.
This module knows nothing of Celery.
"""

from __future__ import annotations

import logging
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import indexes, outbox
from app.db.models import (
    Document,
    DocumentChunk,
    DocumentStatus,
    IndexState,
    IndexVersion,
    IndexVersionDocument,
    Project,
)
from app.embeddings import EmbeddingProvider
from app.embeddings.images import ImageEmbeddingProvider
from app.errors import DuplicateContent
from app.storage import FileStorage, StoredFile
from app.vectorstore import (
    DEFAULT_SEARCH_MODE,
    HYBRID_CANDIDATES,
    RRF_K,
    SEARCH_MODES,
    Hit,
    SearchMode,
    VectorStore,
)

#: ``enqueue(document_id, generation)`` — schedule processing of that generation of a document.
Enqueue = Callable[[uuid.UUID, int], None]
#: ``(document_id, generation)``: a run to enqueue (or run in-process) after the caller commits.
Job = tuple[uuid.UUID, int]

_log = logging.getLogger(__name__)

#: Longest stored file name, characters (fits the column and common file systems' 255 bytes).
MAX_FILE_NAME = 200
#: Format characters a file name keeps: the zero-width (non-)joiners that emoji sequences and
#: Indic and Persian names need.
_KEPT_FORMAT = frozenset("\u200c\u200d")
#: Unicode categories replaced in file names: control characters (Cc), surrogates (Cs: an
#: undecodable name read from disk, ``\udcff``; no database can store one), line and paragraph
#: separators (Zl, Zp).
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


def _unsafe(char: str) -> bool:
    """Whether ``char`` is replaced in a file name.

    Besides controls, every format character (Cf) but the joiners: the invisible ones that
    reorder text (bidi marks U+061C, U+200E, U+200F; embeddings and overrides U+202A to U+202E;
    isolates U+2066 to U+2069: "invoice" U+202E "fdp.exe" shows as "invoiceexe.pdf") or hide it
    (zero-width space, word joiner, BOM, soft hyphen, tag characters that smuggle invisible
    ASCII). One rule by category, so a mark is never removed while its sibling stays.
    """
    category = unicodedata.category(char)
    return category in _UNSAFE_CATEGORIES or (category == "Cf" and char not in _KEPT_FORMAT)


class NotFound(LookupError):
    """The project or document does not exist (the API answers 404)."""


class Conflict(ValueError):
    """The request conflicts with existing state (the API answers 409)."""


def sanitize_file_name(name: str | None) -> str:
    """A display-safe file name: the last path component, no control characters, ≤ 200 chars.

    Only used for display and payloads: stored files are addressed by their hash.
    """
    name = unicodedata.normalize("NFC", name or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    # Each run of unsafe characters becomes one "_".
    name = "".join("_" if bad else "".join(run) for bad, run in groupby(name, key=_unsafe))
    name = name.strip().strip(".") or "unnamed"
    if len(name) > MAX_FILE_NAME:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 10:
            name = stem[: MAX_FILE_NAME - len(ext) - 1] + "." + ext
        else:
            name = name[:MAX_FILE_NAME]
    return name


def sanitize_relative_path(path: str) -> str:
    """A display-safe relative path (``guide/intro.md``): each component as
    :func:`sanitize_file_name` makes it, joined by ``/``, at most 200 characters.

    What ``docvec ingest DIR`` records as a file's name, so that two files of one name in two
    folders stay two names and a file's next version is found by its path (README, "New
    versions of a document"). When the path is too long, leading folders are dropped: the name
    and its extension matter most (the extractor reads the extension).
    """
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    names = [sanitize_file_name(p) for p in parts] or ["unnamed"]
    while len(names) > 1 and len("/".join(names)) > MAX_FILE_NAME:
        names.pop(0)
    return "/".join(names)


# ---- projects -----------------------------------------------------------------------------
def create_project(session: Session, *, name: str, description: str | None = None) -> Project:
    """Create a project. Raises :class:`Conflict` if the name is taken."""
    project = Project(name=name, description=description)
    session.add(project)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(f"a project named {name!r} already exists") from exc
    return project


def get_or_create_project(session: Session, *, name: str) -> Project:
    """The project called ``name``, created if missing."""
    project = session.scalar(select(Project).where(Project.name == name))
    if project is not None:
        return project
    try:
        return create_project(session, name=name)
    except Conflict:
        found = session.scalar(select(Project).where(Project.name == name))
        assert found is not None
        return found


def get_project(session: Session, project_id: uuid.UUID) -> Project:
    """The project, or :class:`NotFound`."""
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound(f"project {project_id} not found")
    return project


def find_project(session: Session, ref: str) -> Project:
    """A project by name or id (the CLI accepts either)."""
    project = session.scalar(select(Project).where(Project.name == ref))
    if project is None:
        try:
            project = session.get(Project, uuid.UUID(ref))
        except ValueError:
            project = None
    if project is None:
        raise NotFound(f"project {ref!r} not found")
    return project


@dataclass(frozen=True, slots=True)
class ProjectSummary:
    """A project and how many documents it holds."""

    id: uuid.UUID
    name: str
    documents: int


def list_project_summaries(session: Session) -> list[ProjectSummary]:
    """Every project by name, with its number of documents."""
    rows = session.execute(
        select(Project.id, Project.name, func.count(Document.id))
        .outerjoin(Document, Document.project_id == Project.id)
        .group_by(Project.id, Project.name)
        .order_by(Project.name)
    ).all()
    return [ProjectSummary(id=i, name=n, documents=c) for i, n, c in rows]


@dataclass(frozen=True, slots=True)
class ProjectDocuments:
    """A project with all its documents, by file name."""

    project: Project
    documents: list[Document]


def list_project_documents(
    session: Session, *, project: Project | None = None
) -> list[ProjectDocuments]:
    """Every project by name (or only ``project``), each with its documents by file name."""
    projects = (
        [project]
        if project is not None
        else list(session.scalars(select(Project).order_by(Project.name)))
    )
    return [
        ProjectDocuments(
            project=p,
            documents=list(
                session.scalars(
                    select(Document).where(Document.project_id == p.id).order_by(Document.file_name)
                )
            ),
        )
        for p in projects
    ]


def project_names(session: Session, *, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The names of those of ``ids`` that are projects (deleted ones are missing)."""
    rows = session.execute(select(Project.id, Project.name).where(Project.id.in_(list(ids))))
    return {project_id: name for project_id, name in rows.all()}


def delete_project(
    session: Session,
    *,
    project: Project,
    stores: Sequence[VectorStore],
    storage: FileStorage,
    own_stores: Sequence[VectorStore] = (),
) -> None:
    """Delete the project's rows, then its points (in ``stores``: the shared collections its
    index versions use) and the collections only its versions used (``own_stores``, dropped;
    both from ``Runtime.project_stores``), then its unreferenced files.

    SQL goes first so that no search can return a chunk of a deleted project; points left behind
    by a crash in between are invisible (search hydrates from SQL) and ``reconcile`` removes them.
    """
    uris = list(
        session.scalars(select(Document.storage_uri).where(Document.project_id == project.id))
    )
    project_id = project.id
    session.delete(project)
    session.commit()
    for store in stores:
        store.delete_project(project_id)
    for store in own_stores:
        store.drop_collection()
    delete_unreferenced_files(session, storage, uris)


# ---- documents ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AddResult:
    """A recorded upload: the document and whether it is new (False: same bytes already there)."""

    document: Document
    created: bool


def add_document(
    session: Session,
    *,
    project: Project,
    storage: FileStorage,
    file_name: str | None,
    pieces: Iterable[bytes] | None = None,
    path: Path | None = None,
    content_type: str | None = None,
    max_bytes: int | None = None,
    keep_folders: bool = False,
) -> AddResult:
    """Store a file content-addressed and record a ``pending`` document (generation 1).

    The same bytes in the same project return the existing document (``created=False``).
    Give either ``pieces`` (a stream of bytes) or ``path``. ``keep_folders``: ``file_name`` is
    a relative path to keep as such (:func:`sanitize_relative_path`: ``docvec ingest``), not
    an uploaded name reduced to its last component (:func:`sanitize_file_name`).

    Raises:
        DocumentTooLarge: more than ``max_bytes`` bytes.
    """
    if path is not None:
        stored: StoredFile = storage.save_path(path, max_bytes=max_bytes)
    else:
        assert pieces is not None
        stored = storage.save_stream(pieces, max_bytes=max_bytes)
    try:
        existing = _by_sha(session, project.id, stored.sha256)
        if existing is not None:
            return AddResult(existing, created=False)
        doc = Document(
            project_id=project.id,
            file_name=(
                sanitize_relative_path(file_name or "")
                if keep_folders
                else sanitize_file_name(file_name)
            ),
            content_type=content_type,
            size_bytes=stored.size_bytes,
            sha256=stored.sha256,
            storage_uri=stored.uri,
            status=DocumentStatus.pending,
            generation=1,
        )
        session.add(doc)
        try:
            session.flush()
        except IntegrityError:
            # A concurrent upload of the same bytes won the unique (project_id, sha256) race.
            session.rollback()
            existing = _by_sha(session, project.id, stored.sha256)
            if existing is None:
                raise
            return AddResult(existing, created=False)
        return AddResult(doc, created=True)
    except BaseException:
        # Bytes whose record failed must not stay on disk, unreferenced.
        discard_uploads(session, storage, [stored.uri])
        raise


def document_with_content(
    session: Session, *, project_id: uuid.UUID, sha256: str
) -> Document | None:
    """The project's document whose file has this SHA-256 (hex), if any (at most one: unique
    per project)."""
    return _by_sha(session, project_id, sha256)


def _by_sha(session: Session, project_id: uuid.UUID, sha: str) -> Document | None:
    return session.scalar(
        select(Document).where(Document.project_id == project_id, Document.sha256 == sha)
    )


def get_document(session: Session, document_id: uuid.UUID, *, for_update: bool = False) -> Document:
    """The document, or :class:`NotFound`; ``for_update`` locks its row (PostgreSQL) until the
    caller commits, so concurrent requests for one document decide one after the other."""
    doc = session.get(Document, document_id, with_for_update=for_update or None)
    if doc is None:
        raise NotFound(f"document {document_id} not found")
    return doc


def request_revectorize(session: Session, *, document: Document) -> int:
    """Bump the document's generation and mark it ``pending``; returns the new generation.

    The caller records the job (outbox) and commits, or runs it here. Older runs still in flight
    see a newer generation at commit time and write nothing (DESIGN §2, invariant 3).
    """
    session.execute(
        update(Document)
        .where(Document.id == document.id)
        .values(
            generation=Document.generation + 1,
            status=DocumentStatus.pending,
            error=None,
            failed_stage=None,
        )
    )
    session.refresh(document)
    return document.generation


def revectorize_document(session: Session, *, document: Document) -> list[Job]:
    """Re-vectorize one document unless a job for it is already on its way.

    A document ``pending`` with a job in the outbox or the broker (``queued_at``: cleared when a
    run claims it) is left as it is: that job reads the document's row — its file included —
    when it claims it, so a second request before the claim is coalesced into it (a double
    click queues nothing more). Otherwise :func:`request_revectorize` bumps the generation.

    Lock the document's row first (``get_document(..., for_update=True)``) so that concurrent
    requests decide one after the other.

    Returns:
        The job to enqueue after committing (:func:`app.outbox.put_jobs`), or none when
        coalesced.
    """
    if outbox.is_queued(document):
        return []
    return [(document.id, request_revectorize(session, document=document))]


@dataclass(frozen=True, slots=True)
class ReplaceResult:
    """A new version given to a document (:func:`replace_document`).

    Attributes:
        document: the document, with its new content (or as it was, when ``changed`` is False).
        changed: False when the bytes were the document's own already: nothing was done.
        jobs: the re-vectorize to enqueue after committing (none when unchanged, or when a job
            already on its way will read the new file: :func:`revectorize_document`).
        old_uri: the file the document held before; after the commit, remove it when no
            document references it any more (:func:`delete_unreferenced_files`). None when
            unchanged.
        new_uri: the file now stored for it; if the caller's commit fails, discard it
            (:func:`discard_uploads`).
    """

    document: Document
    changed: bool
    jobs: list[Job]
    old_uri: str | None
    new_uri: str


def replace_document(
    session: Session,
    *,
    document: Document,
    storage: FileStorage,
    pieces: Iterable[bytes] | None = None,
    path: Path | None = None,
    file_name: str | None = None,
    content_type: str | None = None,
    max_bytes: int | None = None,
) -> ReplaceResult:
    """Give ``document`` new content in place: a new version of its file.

    The bytes are stored content-addressed; the document keeps its id — so its points (ids from
    document id and chunk index) are overwritten by the next run, which also deletes the points
    and rows of chunk indexes the new version no longer has — and gets the new ``sha256``,
    ``size_bytes``, ``storage_uri`` and ``content_type``, ``file_name`` if given (sanitised),
    and no error. The re-vectorize goes through :func:`revectorize_document`: a new generation
    (runs of the old one write nothing; index versions being built find the document changed
    and build it again) unless a job on its way will read the new file anyway. Chunks whose
    text the old version already had are not embedded again (app/pipeline/reuse.py).

    Nothing is committed here and no file is deleted: the caller records ``jobs`` in the
    outbox, commits, and only then removes ``old_uri`` if no document references it — a
    commit that fails must leave the old version whole, and files are shared by every document
    with the same bytes. Give either ``pieces`` or ``path``; lock the document's row first.

    Args:
        document: the document to give new content (its row locked by the caller).
        storage: where the bytes go.
        pieces: the new file as a stream of bytes (an HTTP upload).
        path: the new file on disk (``docvec ingest``).
        file_name: its new name; None keeps the document's.
        content_type: the part's declared type (the pipeline records the extracted one).
        max_bytes: refuse more bytes than this (``DOCVEC_MAX_UPLOAD_BYTES``).

    Returns:
        A :class:`ReplaceResult`; ``changed`` False when the bytes are the document's own.

    Raises:
        DocumentTooLarge: more than ``max_bytes`` bytes (nothing changed, nothing kept).
        DuplicateContent: another document of the project has these bytes (nothing changed;
            the message names it).
    """
    if path is not None:
        stored: StoredFile = storage.save_path(path, max_bytes=max_bytes)
    else:
        assert pieces is not None
        stored = storage.save_stream(pieces, max_bytes=max_bytes)
    if stored.sha256 == document.sha256:
        # The same bytes as now: the stored file is the document's own (content-addressed).
        return ReplaceResult(document, False, [], None, stored.uri)
    other = _by_sha(session, document.project_id, stored.sha256)
    if other is not None:
        # Nothing to undo: the stored file is that document's (content-addressed), and the
        # caller's transaction is left alone (docvec ingest records a whole folder in one).
        raise _duplicate(other)
    try:
        old_uri = document.storage_uri
        document.sha256 = stored.sha256
        document.size_bytes = stored.size_bytes
        document.storage_uri = stored.uri
        document.content_type = content_type
        if file_name is not None:
            document.file_name = sanitize_file_name(file_name)
        document.error = None
        document.failed_stage = None
        try:
            session.flush()
        except IntegrityError:
            # A concurrent upload of the same bytes won the unique (project_id, sha256) race.
            session.rollback()
            other = _by_sha(session, document.project_id, stored.sha256)
            if other is None:
                raise
            raise _duplicate(other) from None
        jobs = revectorize_document(session, document=document)
        return ReplaceResult(document, True, jobs, old_uri, stored.uri)
    except BaseException:
        # Bytes whose record failed must not stay on disk, unreferenced.
        discard_uploads(session, storage, [stored.uri])
        raise


def _duplicate(other: Document) -> DuplicateContent:
    return DuplicateContent(
        f"these bytes are already document {other.id} ({other.file_name!r}) of this project; "
        "a document holds one file: delete that one first, or keep both as they are",
        document_id=str(other.id),
    )


def documents_by_name(session: Session, *, project_id: uuid.UUID) -> dict[str, list[uuid.UUID]]:
    """The project's document ids by ``file_name`` (one query; ``docvec ingest`` matches each
    file's path against it to find the document it is a new version of)."""
    by_name: dict[str, list[uuid.UUID]] = {}
    rows = session.execute(
        select(Document.file_name, Document.id)
        .where(Document.project_id == project_id)
        .order_by(Document.created_at, Document.id)
    )
    for name, doc_id in rows.all():
        by_name.setdefault(name, []).append(doc_id)
    return by_name


def revectorize_project(session: Session, *, project: Project) -> list[Job]:
    """Mark every document of the project for re-vectorizing (:func:`request_revectorize`).

    Returns the jobs for the caller to enqueue after committing.
    """
    documents = session.scalars(select(Document).where(Document.project_id == project.id)).all()
    return [(d.id, request_revectorize(session, document=d)) for d in documents]


def delete_document(
    session: Session, *, document: Document, stores: Sequence[VectorStore], storage: FileStorage
) -> None:
    """Delete the document's rows (chunks, attempts, index-version records cascade), then its
    points in ``stores`` (every index version's collection: a document deleted during a build
    vanishes from both versions) and its file."""
    doc_id, uri = document.id, document.storage_uri
    session.delete(document)
    session.commit()
    for store in stores:
        store.delete_document(doc_id)
    delete_unreferenced_files(session, storage, [uri])


def delete_unreferenced_files(session: Session, storage: FileStorage, uris: Sequence[str]) -> None:
    """Delete the stored files among ``uris`` that no committed document references (files are
    content-addressed and shared by every document with the same bytes)."""
    for uri in set(uris):
        still_used = session.scalar(select(func.count()).where(Document.storage_uri == uri))
        if not still_used:
            storage.delete(uri)


def discard_uploads(session: Session, storage: FileStorage, uris: Sequence[str]) -> None:
    """Undo a failed or refused upload: roll the session back, then delete the stored files among
    ``uris`` that no committed document references (another document may share the bytes).

    Never raises, so that the caller's error is the one reported: a file it cannot check (the
    database is gone) stays — a leftover file costs disk, not correctness.
    """
    try:
        session.rollback()
        delete_unreferenced_files(session, storage, uris)
    except Exception:
        _log.warning("could not remove the files of a failed upload", exc_info=True)


# ---- search -------------------------------------------------------------------------------
#: The sides of a search that can find a hit: the chunk's embedding, its words (BM25), and the
#: picture of its page (an image document's image vector, README "Images").
Side = str
SIDES: tuple[Side, ...] = ("dense", "lexical", "image")


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One chunk — or one page of an image document — found by search.

    ``score`` depends on the mode: cosine similarity in [-1, 1] (``dense``), BM25 score, positive
    and unbounded (``lexical``), or the Reciprocal Rank Fusion score (``hybrid``, and every
    search that also ranked image vectors). The ranks are the hit's 1-based places in the dense,
    lexical and image rankings (None: not ranked by that side, or that side not asked), the
    scores its cosine similarity, BM25 score and image cosine similarity there; ``matched`` names
    the sides that found it, in that order.

    An image page found by what it shows is tied to a chunk of that page when OCR read text there
    (the chunk the text side ranked best, else the page's first); with no text on the page, the
    chunk fields are None and ``text`` is empty: the hit is the document's page.
    """

    score: float
    document_id: uuid.UUID
    file_name: str
    chunk_index: int | None
    page: int | None
    text: str
    start_char: int | None
    end_char: int | None
    #: The chunk's stable id (its ``document_chunks`` row id, = its point id): what a citation
    #: of an answer points at; None for an image page without text.
    chunk_id: uuid.UUID | None
    dense_rank: int | None = None
    lexical_rank: int | None = None
    dense_score: float | None = None
    lexical_score: float | None = None
    image_rank: int | None = None
    image_score: float | None = None
    matched: tuple[Side, ...] = ()


def search(
    session: Session,
    *,
    project: Project,
    query: str,
    provider: EmbeddingProvider,
    store: VectorStore,
    top_k: int = 5,
    score_threshold: float | None = None,
    mode: SearchMode = DEFAULT_SEARCH_MODE,
    image_provider: ImageEmbeddingProvider | None = None,
    image_store: VectorStore | None = None,
    chunk_set: str = "",
) -> list[SearchResult]:
    """Search inside one project: the ``top_k`` best chunks, best first.

    ``mode``: ``dense`` (cosine similarity of embeddings), ``lexical`` (BM25; the query is not
    embedded) or ``hybrid`` (both rankings fused by RRF). The query is embedded by the same
    provider as the collection. ``score_threshold`` is a cosine similarity: it drops dense hits
    below it, and in ``hybrid`` mode removes them from the dense ranking before the fusion
    (lexical matches still count); ``lexical`` mode refuses it. The store filters by project on
    the server side; texts come from SQL, the source of truth, so a point without a chunk row (a
    crash mid-delete) is never shown.

    Images: with ``image_provider`` and ``image_store`` (the index version's image model and
    image collection) in ``dense`` or ``hybrid`` mode, the query is also embedded by the image
    model's text tower and the pages of image documents ranked by their image vectors; the
    rankings are fused by RRF (``1 / (RRF_K + rank)`` per ranking, as hybrid search fuses its
    two), each side contributing its best ``max(top_k, HYBRID_CANDIDATES)``, and ``score`` is the
    fused score. ``score_threshold`` applies to the dense side only. ``chunk_set`` is the index
    version's chunk set, in which an image page's chunks are looked up.

    Raises:
        ValueError: an unknown ``mode``, or ``score_threshold`` with ``mode="lexical"``.
    """
    with_images = image_provider is not None and image_store is not None and mode != "lexical"
    depth = max(top_k, HYBRID_CANDIDATES) if with_images else top_k
    if mode == "dense":
        vector = provider.embed_query(query)
        hits = store.search(project.id, vector, top_k=depth, score_threshold=score_threshold)
    elif mode == "lexical":
        if score_threshold is not None:
            raise ValueError(
                "score_threshold is a cosine similarity of the dense side: it has no meaning "
                "in lexical mode"
            )
        hits = store.search_lexical(project.id, query, top_k=top_k)
    elif mode == "hybrid":
        vector = provider.embed_query(query)
        hits = store.search_hybrid(
            project.id, vector, query, top_k=depth, score_threshold=score_threshold
        )
    else:
        raise ValueError(f"unknown search mode {mode!r}; choose one of {list(SEARCH_MODES)}")
    if with_images:
        assert image_provider is not None and image_store is not None
        pictures = image_store.search(project.id, image_provider.embed_query(query), top_k=depth)
        return _with_images(
            session, project=project, hits=hits, pictures=pictures, top_k=top_k, chunk_set=chunk_set
        )
    if not hits:
        return []
    rows = {
        c.id: c
        for c in session.scalars(
            select(DocumentChunk).where(DocumentChunk.id.in_([h.id for h in hits]))
        )
    }
    names: dict[uuid.UUID, str] = {
        doc_id: file_name
        for doc_id, file_name in session.execute(
            select(Document.id, Document.file_name).where(
                Document.id.in_({h.document_id for h in hits}), Document.project_id == project.id
            )
        ).all()
    }
    results = []
    for h in hits:
        row = rows.get(h.id)
        if row is None or h.document_id not in names:
            continue
        results.append(
            SearchResult(
                score=h.score,
                document_id=h.document_id,
                file_name=names[h.document_id],
                chunk_index=row.chunk_index,
                page=row.page,
                text=row.content,
                start_char=row.start_char,
                end_char=row.end_char,
                chunk_id=row.id,
                dense_rank=h.dense_rank,
                lexical_rank=h.lexical_rank,
                dense_score=h.dense_score,
                lexical_score=h.lexical_score,
                matched=_matched(h.dense_rank, h.lexical_rank, None),
            )
        )
    return results


def _matched(dense: int | None, lexical: int | None, image: int | None) -> tuple[Side, ...]:
    """The sides with a rank, in :data:`SIDES` order."""
    return tuple(side for side, rank in zip(SIDES, (dense, lexical, image), strict=True) if rank)


@dataclass
class _Fused:
    """One entry of the fusion of the text and image rankings (a chunk, or a page without text)."""

    document_id: uuid.UUID
    row: DocumentChunk | None
    page: int | None
    dense_rank: int | None = None
    lexical_rank: int | None = None
    dense_score: float | None = None
    lexical_score: float | None = None
    image_rank: int | None = None
    image_score: float | None = None

    def ranks(self) -> list[int]:
        return [r for r in (self.dense_rank, self.lexical_rank, self.image_rank) if r is not None]

    def score(self, k: int) -> float:
        """RRF: ``sum(1 / (k + rank))`` over the rankings that found it."""
        return sum(1.0 / (k + r) for r in self.ranks())


def _with_images(
    session: Session,
    *,
    project: Project,
    hits: Sequence[Hit],
    pictures: Sequence[Hit],
    top_k: int,
    chunk_set: str,
    k: int = RRF_K,
) -> list[SearchResult]:
    """Fuse the text ranking ``hits`` (chunk points, with their dense/lexical ranks) with the
    image ranking ``pictures`` (image points: ``chunk_index`` is the 0-based page index) by RRF;
    the ``top_k`` best as results, hydrated from SQL, best first (ties: the better single rank,
    then the document and page, so the order is deterministic)."""
    documents = {h.document_id for h in hits} | {p.document_id for p in pictures}
    if not documents:
        return []
    names: dict[uuid.UUID, str] = dict(
        session.execute(
            select(Document.id, Document.file_name).where(
                Document.id.in_(documents), Document.project_id == project.id
            )
        ).all()
    )
    rows = {
        c.id: c
        for c in session.scalars(
            select(DocumentChunk).where(DocumentChunk.id.in_([h.id for h in hits]))
        )
    }
    fused: dict[uuid.UUID, _Fused] = {}
    text_rank: dict[uuid.UUID, int] = {}
    for r, h in enumerate(hits, 1):
        row = rows.get(h.id)
        if row is None or h.document_id not in names:
            continue  # a point without its row (a crash mid-delete) is never shown
        text_rank[h.id] = r
        fused[h.id] = _Fused(
            h.document_id,
            row,
            row.page,
            h.dense_rank,
            h.lexical_rank,
            h.dense_score,
            h.lexical_score,
        )
    # Each page found by its picture is tied to a chunk of that page, if OCR read text there.
    pages = {(p.document_id, p.chunk_index + 1) for p in pictures if p.document_id in names}
    on_page: dict[tuple[uuid.UUID, int], list[DocumentChunk]] = {}
    if pages:
        for c in session.scalars(
            select(DocumentChunk)
            .where(
                DocumentChunk.document_id.in_({d for d, _ in pages}),
                DocumentChunk.chunk_set == chunk_set,
            )
            .order_by(DocumentChunk.chunk_index)
        ):
            if c.page is not None and (c.document_id, c.page) in pages:
                on_page.setdefault((c.document_id, c.page), []).append(c)
    for r, p in enumerate(pictures, 1):
        if p.document_id not in names:
            continue
        page = p.chunk_index + 1
        chunks = on_page.get((p.document_id, page), [])
        best = (
            min(chunks, key=lambda c: (text_rank.get(c.id, len(hits) + 1), c.chunk_index))
            if chunks
            else None
        )
        key = best.id if best is not None else p.id
        entry = fused.get(key)
        if entry is None:
            entry = fused[key] = _Fused(p.document_id, best, page)
        entry.image_rank, entry.image_score = r, p.score

    def order(item: tuple[uuid.UUID, _Fused]) -> tuple[float, int, str, int, str]:
        key, e = item
        return (-e.score(k), min(e.ranks()), str(e.document_id), e.page or 0, str(key))

    results = []
    for _, e in sorted(fused.items(), key=order)[: max(top_k, 0)]:
        row = e.row
        results.append(
            SearchResult(
                score=e.score(k),
                document_id=e.document_id,
                file_name=names[e.document_id],
                chunk_index=row.chunk_index if row is not None else None,
                page=e.page,
                text=row.content if row is not None else "",
                start_char=row.start_char if row is not None else None,
                end_char=row.end_char if row is not None else None,
                chunk_id=row.id if row is not None else None,
                dense_rank=e.dense_rank,
                lexical_rank=e.lexical_rank,
                dense_score=e.dense_score,
                lexical_score=e.lexical_score,
                image_rank=e.image_rank,
                image_score=e.image_score,
                matched=_matched(e.dense_rank, e.lexical_rank, e.image_rank),
            )
        )
    return results


# ---- operations: retry, sweep, reconcile --------------------------------------------------
def retry_failed(session: Session, *, project: Project | None = None) -> list[Job]:
    """Mark every failed document (of one project, or all) pending again with a new generation.

    Returns the jobs for the caller to enqueue after committing.
    """
    q = select(Document).where(Document.status == DocumentStatus.failed)
    if project is not None:
        q = q.where(Document.project_id == project.id)
    return [(d.id, request_revectorize(session, document=d)) for d in session.scalars(q).all()]


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What one sweep did: documents re-queued (their jobs are in the outbox), documents failed
    for good, and attempt rows closed as ``abandoned``."""

    requeued: list[Job]
    failed: list[uuid.UUID]
    abandoned: int = 0


#: Reason written on an attempt whose worker died before finishing it.
ABANDONED_REASON = (
    "abandoned: its worker stopped without finishing (killed, out of memory, machine lost, or the "
    "hard time limit); found by the sweep"
)


def sweep_stuck(
    session: Session,
    *,
    stuck_after_s: float,
    pending_after_s: float,
    queue_depth: int | None,
    max_runs: int,
) -> SweepResult:
    """Find documents no worker will finish on its own, and runs no worker is running.

    * Attempts still ``running`` after ``stuck_after_s`` (longer than any run can last: the
      task's hard time limit plus a minute) end ``abandoned`` with :data:`ABANDONED_REASON`.
    * ``processing`` longer than ``stuck_after_s``: the worker died (OOM, machine lost) after the
      message was acknowledged, or the time limit killed it. The sweep re-queues it — unless the
      document already had ``max_runs`` runs of this generation that never finished, then it
      fails for good (a document that kills its worker every time must not loop).
    * ``pending`` longer than ``pending_after_s`` past its ``queued_at`` (or never queued), with
      no job waiting in the outbox, while the broker's queue is empty (``queue_depth == 0``):
      its message was lost (a Redis restart without persistence, a purge). While messages wait
      in the queue a long backlog is not mistaken for loss; with ``queue_depth=None`` (broker
      unknown) no pending document is re-queued.

    Re-queued documents get their outbox row here, in the caller's transaction; the caller
    commits and then relays (:func:`app.outbox.relay`).
    """
    from app.db.models import AttemptOutcome, OutboxEntry, VectorizationAttempt, utcnow

    now = utcnow()
    requeued: list[Job] = []
    failed: list[uuid.UUID] = []
    abandoned = 0
    old_runs = session.scalars(
        select(VectorizationAttempt)
        .where(VectorizationAttempt.outcome == AttemptOutcome.running)
        .with_for_update(skip_locked=True)
    ).all()
    for run in old_runs:
        if (now - _aware(run.started_at)).total_seconds() >= stuck_after_s:
            run.outcome = AttemptOutcome.abandoned
            run.finished_at = now
            run.error = ABANDONED_REASON
            run.error_class = "WorkerLost"
            abandoned += 1
    stuck = session.scalars(
        select(Document)
        .where(Document.status == DocumentStatus.processing)
        .with_for_update(skip_locked=True)
    ).all()
    for d in stuck:
        if (now - _aware(d.updated_at)).total_seconds() < stuck_after_s:
            continue
        unfinished = session.scalar(
            select(func.count()).where(
                VectorizationAttempt.document_id == d.id,
                VectorizationAttempt.generation == d.generation,
                VectorizationAttempt.outcome.in_(
                    [AttemptOutcome.running, AttemptOutcome.abandoned]
                ),
            )
        )
        if (unfinished or 0) >= max_runs:
            d.status = DocumentStatus.failed
            d.failed_stage = "worker"
            d.error = (
                f"the worker processing this document died or hit the time limit "
                f"{unfinished} times; it is not retried again"
            )
            failed.append(d.id)
            continue
        d.status = DocumentStatus.pending
        d.error = "re-queued by the sweep: its worker stopped without finishing"
        outbox.put(session, d, now=now)
        requeued.append((d.id, d.generation))
    if queue_depth == 0:
        in_outbox = set(session.scalars(select(OutboxEntry.document_id)))
        done = {r[0] for r in requeued}
        waiting = session.scalars(
            select(Document)
            .where(Document.status == DocumentStatus.pending)
            .with_for_update(skip_locked=True)
        ).all()
        for d in waiting:
            if d.id in done or d.id in in_outbox:
                continue
            since = _aware(d.queued_at or d.updated_at)
            if (now - since).total_seconds() < pending_after_s:
                continue
            outbox.put(session, d, now=now)
            requeued.append((d.id, d.generation))
    return SweepResult(requeued=requeued, failed=failed, abandoned=abandoned)


def _aware(dt: datetime) -> datetime:
    # SQLite returns naive datetimes for timezone-aware columns; they were written in UTC.
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


@dataclass
class ReconcileReport:
    """Differences between SQL and the vector store (DESIGN §2, invariant 6)."""

    #: Points with no chunk row (e.g. a crash between a delete's SQL commit and its point delete).
    orphan_points: set[uuid.UUID]
    #: Chunk rows with no point, grouped by document.
    missing_points: dict[uuid.UUID, int]
    #: Vectorized documents whose ``chunk_count`` differs from their chunk rows.
    count_mismatches: dict[uuid.UUID, tuple[int, int]]
    fixed: bool = False
    #: Points without their lexical side (written before the lexical index), by document.
    missing_lexical: dict[uuid.UUID, int] = field(default_factory=dict)
    #: Documents a non-active index version records but lacks points of, by version.
    version_gaps: dict[uuid.UUID, set[uuid.UUID]] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not (
            self.orphan_points
            or self.missing_points
            or self.count_mismatches
            or self.missing_lexical
            or self.version_gaps
        )

    @classmethod
    def merged(cls, reports: Sequence[ReconcileReport]) -> ReconcileReport:
        """One report of several collections' (``docvec reconcile`` over index versions)."""
        out = cls(set(), {}, {})
        for r in reports:
            out.orphan_points |= r.orphan_points
            out.missing_points.update(r.missing_points)
            out.count_mismatches.update(r.count_mismatches)
            out.missing_lexical.update(r.missing_lexical)
            out.version_gaps.update(r.version_gaps)
            out.fixed = out.fixed or r.fixed
        return out

    def as_dict(self) -> dict[str, object]:
        return {
            "clean": self.clean,
            "orphan_points": len(self.orphan_points),
            "documents_missing_points": {str(k): v for k, v in self.missing_points.items()},
            "count_mismatches": {
                str(k): {"chunk_count": a, "chunk_rows": b}
                for k, (a, b) in self.count_mismatches.items()
            },
            "documents_missing_lexical": {str(k): v for k, v in self.missing_lexical.items()},
            "index_version_gaps": {str(k): len(v) for k, v in self.version_gaps.items()},
            "fixed": self.fixed,
        }


def reconcile(
    session: Session,
    *,
    store: VectorStore,
    versions: Sequence[indexes.VersionRef] | None = None,
) -> ReconcileReport:
    """Compare the chunk rows that belong in ``store``'s collection with its points.

    ``versions``: the index versions whose collection ``store`` is (:func:`reconcile_all`
    passes them); their rows are those of the version's project and chunk set. An active
    version must hold every vectorized document; another (building, ready, retired) only the
    documents it records at their current generation, and a gap there is reported in
    ``version_gaps``. None: every project's first chunk set (``""``) against ``store``, as
    before index versions.

    Only settled documents are compared: a document being processed may legitimately have its new
    points written before its rows (vector store first), so documents in ``processing`` are skipped.
    Points that have a chunk row but no lexical side (BM25 terms) are reported by document.
    Memory: one UUID set per side (about 100 bytes per chunk).
    """
    busy = set(
        session.scalars(select(Document.id).where(Document.status == DocumentStatus.processing))
    )
    scopes = (
        [(v.project_id, v.chunk_set, v.id, v.state == IndexState.active) for v in versions]
        if versions is not None
        else None
    )
    rows: dict[uuid.UUID, uuid.UUID] = {}
    #: For each row, the version whose documents must have it (None: an active version's).
    owner_version: dict[uuid.UUID, uuid.UUID | None] = {}
    held: dict[uuid.UUID, set[uuid.UUID]] = {}
    query = select(
        DocumentChunk.id, DocumentChunk.document_id, Document.project_id, DocumentChunk.chunk_set
    ).join(Document, Document.id == DocumentChunk.document_id)
    by_scope: dict[tuple[uuid.UUID, str], tuple[uuid.UUID, bool]] = {}
    if scopes is None:
        query = query.where(DocumentChunk.chunk_set == "")
    else:
        for project_id, chunk_set, version_id, active in scopes:
            by_scope[(project_id, chunk_set)] = (version_id, active)
            if not active:
                held[version_id] = set(
                    session.scalars(
                        select(IndexVersionDocument.document_id)
                        .join(Document, Document.id == IndexVersionDocument.document_id)
                        .where(
                            IndexVersionDocument.version_id == version_id,
                            IndexVersionDocument.generation == Document.generation,
                            IndexVersionDocument.error.is_(None),
                        )
                    )
                )
    for cid, did, project_id, chunk_set in session.execute(query).all():
        if scopes is None:
            rows[cid] = did
            owner_version[cid] = None
            continue
        scope = by_scope.get((project_id, chunk_set))
        if scope is None:
            continue
        rows[cid] = did
        owner_version[cid] = None if scope[1] else scope[0]
    points = store.point_ids()
    if busy:
        points -= store.point_ids(document_ids=busy)
    orphans = points - set(rows)
    missing: dict[uuid.UUID, int] = {}
    gaps: dict[uuid.UUID, set[uuid.UUID]] = {}
    for cid, did in rows.items():
        if did in busy or cid in points:
            continue
        needed_by = owner_version[cid]
        if needed_by is None:
            missing[did] = missing.get(did, 0) + 1
        elif did in held.get(needed_by, set()):
            gaps.setdefault(needed_by, set()).add(did)
    active_sets: set[tuple[str, uuid.UUID | None]] = (
        {("", None)} if scopes is None else {(cs, pid) for pid, cs, _, a in scopes if a}
    )
    counts: dict[uuid.UUID, int] = {}
    for active_set, in_project in active_sets:
        q = (
            select(DocumentChunk.document_id, func.count())
            .where(DocumentChunk.chunk_set == active_set)
            .group_by(DocumentChunk.document_id)
        )
        if in_project is not None:
            q = q.join(Document, Document.id == DocumentChunk.document_id).where(
                Document.project_id == in_project
            )
        counts.update(dict(session.execute(q).all()))
    vectorized = select(Document).where(Document.status == DocumentStatus.vectorized)
    if scopes is not None:
        vectorized = vectorized.where(
            Document.project_id.in_({pid for pid, _, _, a in scopes if a})
        )
    mismatches = {
        d.id: (d.chunk_count, counts.get(d.id, 0))
        for d in session.scalars(vectorized)
        if d.chunk_count != counts.get(d.id, 0)
    }
    no_lexical: dict[uuid.UUID, int] = {}
    for cid in store.points_without_lexical():
        owner = rows.get(cid)
        if owner is not None and owner not in busy:
            no_lexical[owner] = no_lexical.get(owner, 0) + 1
    return ReconcileReport(
        orphans, missing, mismatches, missing_lexical=no_lexical, version_gaps=gaps
    )


def reconcile_all(
    session: Session, *, store_for: Callable[[str], VectorStore]
) -> list[tuple[VectorStore, ReconcileReport]]:
    """:func:`reconcile` for every collection that an index version (active, building, ready or
    retired) lives in, each with its versions (``docvec reconcile``)."""
    by_collection: dict[str, list[indexes.VersionRef]] = {}
    for row in session.scalars(select(IndexVersion)):
        if row.state in (IndexState.failed, IndexState.cancelled):
            continue
        by_collection.setdefault(row.collection, []).append(indexes.VersionRef.of(row))
    out = [
        (store_for(c), reconcile(session, store=store_for(c), versions=versions))
        for c, versions in sorted(by_collection.items())
    ]
    by_image_collection: dict[str, list[indexes.VersionRef]] = {}
    for versions in by_collection.values():
        for v in versions:
            if v.image_collection is not None:
                by_image_collection.setdefault(v.image_collection, []).append(v)
    out += [
        (store_for(c), reconcile_images(session, store=store_for(c), versions=versions))
        for c, versions in sorted(by_image_collection.items())
    ]
    return out


def reconcile_images(
    session: Session, *, store: VectorStore, versions: Sequence[indexes.VersionRef]
) -> ReconcileReport:
    """Compare an image collection (README, Images) with SQL: each vectorized image document of
    an active version's project — of another version, each one it records at its current
    generation — must have one image point per page (``page_count``), id
    :func:`~app.vectorstore.image_point_id`, and nothing else may be there. Documents being
    processed are skipped. Short documents go to ``missing_points`` (active) or
    ``version_gaps`` (other versions), so :func:`repair` re-vectorizes or rebuilds them."""
    from app.pipeline.extract import IMAGE_TYPES
    from app.vectorstore import image_point_id

    busy = set(
        session.scalars(select(Document.id).where(Document.status == DocumentStatus.processing))
    )
    expected: dict[uuid.UUID, tuple[uuid.UUID, uuid.UUID | None]] = {}
    for v in versions:
        active = v.state == IndexState.active
        q = select(Document.id, Document.page_count).where(
            Document.project_id == v.project_id,
            Document.status == DocumentStatus.vectorized,
            Document.content_type.in_(sorted(IMAGE_TYPES)),
        )
        if not active:
            q = q.join(
                IndexVersionDocument,
                (IndexVersionDocument.document_id == Document.id)
                & (IndexVersionDocument.version_id == v.id)
                & (IndexVersionDocument.generation == Document.generation)
                & IndexVersionDocument.error.is_(None),
            )
        for doc_id, pages in session.execute(q).all():
            for i in range(int(pages or 0)):
                expected[image_point_id(doc_id, i)] = (doc_id, None if active else v.id)
    points = store.point_ids()
    if busy:
        points -= store.point_ids(document_ids=busy)
    missing: dict[uuid.UUID, int] = {}
    gaps: dict[uuid.UUID, set[uuid.UUID]] = {}
    for pid, (doc_id, version_id) in expected.items():
        if pid in points or doc_id in busy:
            continue
        if version_id is None:
            missing[doc_id] = missing.get(doc_id, 0) + 1
        else:
            gaps.setdefault(version_id, set()).add(doc_id)
    return ReconcileReport(points - set(expected), missing, {}, version_gaps=gaps)


def repair(session: Session, *, store: VectorStore, report: ReconcileReport) -> list[Job]:
    """Delete orphan points; mark documents with missing points or lexical sides for
    re-vectorizing; forget a non-active version's record of a document it lacks points of (its
    build — or, for a retired one, the catch-up of a rollback — embeds it again).

    Returns the jobs for the caller to enqueue after committing.
    """
    store.delete_points(report.orphan_points)
    todo: list[Job] = []
    redo = set(report.missing_points) | set(report.count_mismatches) | set(report.missing_lexical)
    for doc_id in redo:
        doc = session.get(Document, doc_id)
        if doc is not None:
            todo.append((doc.id, request_revectorize(session, document=doc)))
    for version_id, docs in report.version_gaps.items():
        session.execute(
            delete(IndexVersionDocument).where(
                IndexVersionDocument.version_id == version_id,
                IndexVersionDocument.document_id.in_(docs),
            )
        )
    report.fixed = True
    return todo
