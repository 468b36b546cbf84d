"""What the pipeline needs from the process that runs it: a protocol, not the composition root.

:class:`app.runtime.Runtime` (built only by the entry points: the API, the CLI, the workers, eval)
satisfies it; the pipeline never imports it, so every import in ``app/pipeline`` points down to the
parts themselves (settings, SQL sessions, file storage, chunker, provider, vector store).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.embeddings import EmbeddingProvider
from app.embeddings.images import ImageEmbeddingProvider
from app.indexes import VersionRef
from app.pipeline.chunk import Chunker
from app.storage import FileStorage
from app.vectorstore import VectorStore


@dataclass(frozen=True)
class ImageParts:
    """What an index version with an image model embeds and keeps image vectors with: the image
    provider, the store of its image collection (one point per page of an image document, id
    :func:`~app.vectorstore.image_point_id`), and ``ensure()``, which creates that collection for
    the provider's size once per process and returns the size (raises ``DimensionMismatch``)."""

    provider: ImageEmbeddingProvider
    store: VectorStore
    ensure: Callable[[], int]


@dataclass(frozen=True)
class IndexParts:
    """What one index version writes and searches with: its provider, its collection's store,
    its chunker, and ``ensure()``, which creates the collection for the provider's vector size
    once per process and returns that size (raises ``IndexMismatch`` / ``DimensionMismatch``);
    and its image model's parts, if it has one."""

    version: VersionRef
    provider: EmbeddingProvider
    store: VectorStore
    chunker: Chunker
    ensure: Callable[[], int]
    images: ImageParts | None = None


class PipelineParts(Protocol):
    """The parts one run of the pipeline uses.

    Attributes:
        settings: the settings object (budgets, limits).
        sessions: SQL session factory.
        storage: where uploaded files are read from.
        chunker: splits extracted text into chunks.
        provider: the embedding provider (may load lazily on first access).
        vector_store: the vector store (may open lazily on first access).
        transient_exceptions: extra exception classes to treat as transient (the worker passes
            Celery's ``SoftTimeLimitExceeded``; the pipeline never imports Celery).
    """

    settings: Settings
    sessions: sessionmaker[Session]
    storage: FileStorage
    chunker: Chunker
    transient_exceptions: tuple[type[BaseException], ...]

    @property
    def provider(self) -> EmbeddingProvider: ...

    @property
    def vector_store(self) -> VectorStore: ...

    def ensure_collection(self) -> None:
        """Create the collection for the provider's dimension if missing.

        Raises:
            app.errors.DimensionMismatch: it exists with another vector size.
        """
        ...

    def index_parts(self, ref: VersionRef) -> IndexParts:
        """The provider, store and chunker of the index version ``ref`` (kept per process)."""
        ...

    def store_for(self, collection: str) -> VectorStore:
        """The store of one collection (no provider is built)."""
        ...
