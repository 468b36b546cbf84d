"""SQLAlchemy 2.0 models (DESIGN §3). The schema itself is created only by Alembic migrations."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    """Timezone-aware now (UTC)."""
    return datetime.now(UTC)


# Stable constraint names so migrations are reproducible on SQLite and PostgreSQL alike.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class DocumentStatus(enum.StrEnum):
    """Lifecycle of a document: ``pending`` → ``processing`` → ``vectorized`` | ``failed``."""

    pending = "pending"
    processing = "processing"
    vectorized = "vectorized"
    failed = "failed"


class AttemptOutcome(enum.StrEnum):
    """How one job attempt ended. ``superseded``: a newer run of the same document won;
    ``abandoned``: its worker died (``kill -9``, OOM, lost machine, hard time limit) before it
    finished, found and closed by the sweep."""

    running = "running"
    succeeded = "succeeded"
    retrying = "retrying"
    failed = "failed"
    superseded = "superseded"
    abandoned = "abandoned"


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    documents: Mapped[list[Document]] = relationship(
        back_populates="project", cascade="all, delete-orphan", passive_deletes=True
    )


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (
        UniqueConstraint("project_id", "sha256", name="uq_documents_project_sha256"),
        Index("ix_documents_project_status", "project_id", "status"),
        Index("ix_documents_status_updated", "status", "updated_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    project_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("projects.id", ondelete="CASCADE")
    )
    file_name: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str | None] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_uri: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default=DocumentStatus.pending)
    error: Mapped[str | None] = mapped_column(Text)
    failed_stage: Mapped[str | None] = mapped_column(String(20))
    page_count: Mapped[int | None] = mapped_column(Integer)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    embedding_model: Mapped[str | None] = mapped_column(String(200))
    vectorized_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: Bumped by every (re-)vectorize request; a run commits only if it still holds the latest
    #: generation (DESIGN §2, invariant 3).
    generation: Mapped[int] = mapped_column(Integer, default=0)
    #: Set when a job for the current generation is recorded in the outbox (or a retry is
    #: scheduled), cleared when a run claims the document: a pending document with ``queued_at``
    #: has a job on its way, so a second request coalesces into it (app/outbox.py).
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    project: Mapped[Project] = relationship(back_populates="documents")
    chunks: Mapped[list[DocumentChunk]] = relationship(
        back_populates="document",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="DocumentChunk.chunk_index",
    )
    attempts: Mapped[list[VectorizationAttempt]] = relationship(
        back_populates="document",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="VectorizationAttempt.started_at",
    )


class DocumentChunk(Base):
    """One chunk of a document's text, the source of truth for what search shows.

    ``chunk_set`` names the chunking that cut it: ``""`` for the chunking of a project's first
    index version, the key of another :class:`IndexVersion` whose chunking differs (its build
    re-chunks the stored file). Every version with the same chunking shares one set of rows.
    """

    __tablename__ = "document_chunks"
    __table_args__ = (
        UniqueConstraint(
            "document_id", "chunk_set", "chunk_index", name="uq_document_chunks_doc_set_index"
        ),
    )

    #: Equal to the chunk's point id in the vector store.
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    document_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("documents.id", ondelete="CASCADE")
    )
    chunk_set: Mapped[str] = mapped_column(String(32), default="", server_default="")
    chunk_index: Mapped[int] = mapped_column(Integer)
    content: Mapped[str] = mapped_column(Text)
    #: Hex SHA-256 of ``content`` (UTF-8): an unchanged or repeated text reuses its stored vector
    #: instead of being embedded again (app/pipeline/reuse.py). NULL on rows made before it.
    content_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    start_char: Mapped[int] = mapped_column(Integer)
    end_char: Mapped[int] = mapped_column(Integer)
    token_count: Mapped[int] = mapped_column(Integer)
    page: Mapped[int | None] = mapped_column(Integer)
    #: True when some of the chunk's text was read by OCR (a scanned page, an image): it may hold
    #: misread words (app/pipeline/extract/ocr.py).
    ocr: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    document: Mapped[Document] = relationship(back_populates="chunks")


class VectorizationAttempt(Base):
    __tablename__ = "vectorization_attempts"
    __table_args__ = (Index("ix_vectorization_attempts_document", "document_id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    document_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("documents.id", ondelete="CASCADE")
    )
    task_id: Mapped[str | None] = mapped_column(String(200))
    worker: Mapped[str | None] = mapped_column(String(200))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str] = mapped_column(String(20), default=AttemptOutcome.running)
    error: Mapped[str | None] = mapped_column(Text)
    failed_stage: Mapped[str | None] = mapped_column(String(20))
    #: Class of the error tree that ended the attempt (``ProviderUnavailable``, ...).
    error_class: Mapped[str | None] = mapped_column(String(100))
    chunks: Mapped[int | None] = mapped_column(Integer)
    #: Milliseconds per stage: {"read": .., "extract": .., "chunk": .., "embed": .., "upsert": ..,
    #: "commit": ..}.
    timings_ms: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: Embedding usage: {"inputs", "requests", "retries", "tokens"}.
    usage: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    document: Mapped[Document] = relationship(back_populates="attempts")


class OutboxEntry(Base):
    """A job to publish: ``process_document(document_id, generation)`` (DESIGN §2, invariant 7).

    Written in the same transaction that decides a document needs a job (upload, re-vectorize,
    retry, sweep, repair); deleted by the relay once the broker has accepted the message. A crash
    before the publish leaves the row for the next relay; a crash after it, before the delete,
    publishes twice, which the pipeline's generation check makes harmless.
    """

    __tablename__ = "job_outbox"
    __table_args__ = (Index("ix_job_outbox_available_at", "available_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    document_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("documents.id", ondelete="CASCADE")
    )
    generation: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: Not published before this time (a failed publish backs off).
    available_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: Failed publish attempts so far, and the last broker error.
    tries: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class ApiKey(Base):
    """An API key of the HTTP API (``docvec keys create``). Only its SHA-256 is stored.

    A key opens every project (``all_projects``) or the projects listed in ``project_ids``.
    """

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    #: Hex SHA-256 of the whole secret; the secret itself is shown once and never stored.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: The secret's first characters, to tell keys apart in listings and logs.
    prefix: Mapped[str] = mapped_column(String(16))
    all_projects: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Project ids (strings) the key opens when ``all_projects`` is false.
    project_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IndexState(enum.StrEnum):
    """Lifecycle of an index version: ``building`` → ``ready`` (manual activation) or ``active``;
    ``active`` → ``retired`` when another version is activated (kept for a rollback, which
    catches up by building again); ``failed`` / ``cancelled`` end a build without touching the
    active version."""

    building = "building"
    ready = "ready"
    active = "active"
    retired = "retired"
    failed = "failed"
    cancelled = "cancelled"


class IndexVersion(Base):
    """One index of a project: what shapes its vectors, and where they are (DESIGN §2a).

    ``embedding`` holds what identifies the model (provider, model, dimensions, numerics class,
    prefixes) and how to reach it (base URL, the *name* of the key's environment variable —
    never a key); ``chunking`` the chunking settings. ``follows_settings``: made from the
    process settings (``DOCVEC_EMBEDDING__*``, ``DOCVEC_CHUNKING__*``), which must then agree
    with it; a version made with an explicit provider and model is used as recorded.
    """

    __tablename__ = "index_versions"
    __table_args__ = (
        UniqueConstraint("project_id", "version", name="uq_index_versions_project_version"),
        Index("ix_index_versions_state", "state"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    project_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("projects.id", ondelete="CASCADE")
    )
    #: 1, 2, ... per project.
    version: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20), default=IndexState.building)
    embedding: Mapped[dict[str, Any]] = mapped_column(JSON)
    chunking: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: Vector size, learned from the provider on first use when not known in advance.
    dimensions: Mapped[int | None] = mapped_column(Integer)
    #: The physical collection (Qdrant collection, Edge shard folder, pgvector table).
    collection: Mapped[str] = mapped_column(String(200))
    #: Which rows of ``document_chunks`` hold this version's chunks.
    chunk_set: Mapped[str] = mapped_column(String(32), default="")
    follows_settings: Mapped[bool] = mapped_column(Boolean, default=True)
    #: ``auto``: activate when the build is complete and clean; ``manual``: stop at ``ready``.
    activate: Mapped[str] = mapped_column(String(10), default="auto")
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    build_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    built_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: A build step holds the build until then; a later one (the sweep's) takes it over.
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IndexVersionDocument(Base):
    """That ``document_id`` at ``generation`` is in ``version_id`` (or failed to get there).

    Written in the transaction that records the document's points: by the pipeline for the
    version it wrote, by a build for the version it builds. A document is *in* a version when
    its row here holds the document's current generation and no error.
    """

    __tablename__ = "index_version_documents"
    __table_args__ = (Index("ix_index_version_documents_document", "document_id"),)

    version_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("index_versions.id", ondelete="CASCADE"), primary_key=True
    )
    document_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True
    )
    generation: Mapped[int] = mapped_column(Integer)
    chunks: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    built_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
