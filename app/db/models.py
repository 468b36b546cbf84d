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
    __tablename__ = "document_chunks"
    __table_args__ = (
        UniqueConstraint("document_id", "chunk_index", name="uq_document_chunks_doc_index"),
    )

    #: Equal to the chunk's point id in the vector store.
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    document_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("documents.id", ondelete="CASCADE")
    )
    chunk_index: Mapped[int] = mapped_column(Integer)
    content: Mapped[str] = mapped_column(Text)
    start_char: Mapped[int] = mapped_column(Integer)
    end_char: Mapped[int] = mapped_column(Integer)
    token_count: Mapped[int] = mapped_column(Integer)
    page: Mapped[int | None] = mapped_column(Integer)

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
