"""The parts one process needs, built once from the settings: engine, sessions, file storage,
embedding provider, vector store and chunker. Heavy parts (the model, the store) load lazily, so a
Celery prefork parent never holds them and each child builds its own after the fork.
"""

from __future__ import annotations

import json
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
        """Close the vector store (releases Qdrant's local lock) and the SQL pool."""
        if self._store is not None:
            self._store.close()
            self._store = None
        self.engine.dispose()


def model_tokenizer_file(settings: Settings) -> Path | None:
    """The local model's ``tokenizer.json`` when chunks are sized in its tokens, else None.

    Raises:
        ValueError: ``unit="model_tokens"`` with a provider other than ``local``, a model folder
            without ``tokenizer.json``, or a ``chunk_size`` that does not fit the model's window
            (``max_seq_length`` of its ``sentence_bert_config.json`` minus the two special tokens
            every input gets).
    """
    chunking = settings.chunking
    if chunking.unit != "model_tokens":
        return None
    if settings.embedding.provider != "local":
        raise ValueError(
            "DOCVEC_CHUNKING__UNIT=model_tokens sizes chunks with the local model's tokenizer; "
            f"provider {settings.embedding.provider!r} has none here: use unit=tokens (tiktoken)"
        )
    from app.embeddings.local import LocalProvider, resolve_model_path

    folder = Path(resolve_model_path(settings.embedding.model or LocalProvider.default_model))
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise ValueError(f"DOCVEC_CHUNKING__UNIT=model_tokens: no tokenizer.json in {folder}")
    config = folder / "sentence_bert_config.json"
    if config.is_file():
        window = int(json.loads(config.read_text("utf-8")).get("max_seq_length") or 0)
        if window and chunking.chunk_size > window - 2:
            raise ValueError(
                f"DOCVEC_CHUNKING__CHUNK_SIZE={chunking.chunk_size} model tokens does not fit "
                f"the model's window of {window} ({window - 2} plus [CLS] and [SEP]); set it to "
                f"at most {window - 2}"
            )
    return path
