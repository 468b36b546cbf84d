"""The parts one process needs, built once from the settings: engine, sessions, file storage,
embedding provider, vector store and chunker. Heavy parts (the model, the store) load lazily, so a
Celery prefork parent never holds them and each child builds its own after the fork.
"""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db.session import make_engine, make_session_factory
from app.embeddings import EmbeddingProvider, create_provider
from app.pipeline.chunk import Chunker
from app.storage import FileStorage
from app.vectorstore import VectorStore, create_vector_store


class Runtime:
    """Per-process container of docvec's parts.

    Args:
        settings: the settings object.
        pool_size: SQL connections to keep (a worker sizes it to its concurrency).
        provider / vector_store: injected instances (tests share one loaded model).
        transient_exceptions: extra exception classes the pipeline treats as transient (the
            worker passes Celery's ``SoftTimeLimitExceeded``; the pipeline never imports Celery).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        pool_size: int = 5,
        provider: EmbeddingProvider | None = None,
        vector_store: VectorStore | None = None,
        transient_exceptions: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.settings = settings
        self.engine: Engine = make_engine(settings.sqlalchemy_url, pool_size=pool_size)
        self.sessions: sessionmaker[Session] = make_session_factory(self.engine)
        self.storage = FileStorage(settings.files_dir)
        self.chunker = Chunker.from_settings(
            settings.chunking, tokenizer_file=model_tokenizer_file(settings)
        )
        # Every chunk records a token count: load the encoding now, so a missing asset is a
        # start-up error (ValueError naming the remedy), never a failure of every document.
        _ = self.chunker.tokenizer
        self._provider = provider
        self._owns_provider = provider is None
        self._store = vector_store
        self._collection_ready: int | None = None
        self._lock = threading.Lock()
        self.transient_exceptions = transient_exceptions

    @property
    def provider(self) -> EmbeddingProvider:
        """The configured embedding provider (created on first use)."""
        with self._lock:
            if self._provider is None:
                self._provider = create_provider(self.settings.embedding)
            return self._provider

    @property
    def vector_store(self) -> VectorStore:
        """The configured vector store (opened on first use)."""
        with self._lock:
            if self._store is None:
                self._store = create_vector_store(self.settings)
            return self._store

    def ensure_collection(self) -> None:
        """Create the collection for the provider's dimension once per process.

        Raises :class:`app.errors.DimensionMismatch` if it exists with another size.
        """
        dim = self.provider.dimension
        if self._collection_ready != dim:
            self.vector_store.ensure_collection(dim)
            self._collection_ready = dim

    def close(self) -> None:
        """Close the vector store (releases Qdrant's local lock), the provider's connections (if
        this runtime built it) and the SQL pool."""
        if self._owns_provider and self._provider is not None:
            self._provider.close()
        if self._store is not None:
            self._store.close()
            self._store = None
        self.engine.dispose()


def model_tokenizer_file(settings: Settings) -> Path | None:
    """The model's ``tokenizer.json`` when chunks are sized in its tokens, else None.

    Asks the configured provider's class (:func:`app.embeddings.tokenizer_file`); no provider is
    built and no model loaded.

    Raises:
        ValueError: ``unit="model_tokens"`` with a provider that has no tokenizer here (only
            ``local`` has one), a model folder without ``tokenizer.json``, or a ``chunk_size``
            that does not fit the model's window (``max_seq_length`` of its
            ``sentence_bert_config.json`` minus the two special tokens every input gets).
    """
    if settings.chunking.unit != "model_tokens":
        return None
    from app.embeddings import tokenizer_file

    return tokenizer_file(settings.embedding, chunk_size=settings.chunking.chunk_size)
