"""The parts one process needs, built once from the settings: engine, sessions, file storage,
embedding provider, vector store, chunker and chat provider (answers). Heavy parts (the model, the
store) load lazily, so a Celery prefork parent never holds them and each child builds its own after
the fork.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app import indexes, services
from app.chat import ChatProvider, create_chat_provider
from app.config import Settings
from app.db.models import Project
from app.db.session import make_engine, make_session_factory
from app.embeddings import EmbeddingProvider, create_provider
from app.embeddings.images import ImageEmbeddingProvider, create_image_provider
from app.errors import IndexMismatch
from app.indexes import IndexSpec, VersionRef
from app.pipeline.chunk import Chunker
from app.pipeline.parts import ImageParts, IndexParts
from app.storage import FileStorage
from app.vectorstore import DEFAULT_SEARCH_MODE, SearchMode, VectorStore, create_vector_store


class Runtime:
    """Per-process container of docvec's parts.

    Args:
        settings: the settings object.
        pool_size: SQL connections to keep (a worker sizes it to its concurrency).
        provider / vector_store / image_provider: injected instances (tests share one loaded
            model); ``image_provider`` stands for the settings' image model.
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
        image_provider: ImageEmbeddingProvider | None = None,
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
        #: What index versions other than the settings' need, built once per process: providers
        #: by their recorded configuration, stores by collection, chunkers by chunking.
        self._providers: dict[str, EmbeddingProvider] = {}
        self._stores: dict[str, VectorStore] = {}
        self._chunkers: dict[str, Chunker] = {}
        self._ready: dict[str, int] = {}
        self._chat: ChatProvider | None = None
        self._image_provider = image_provider
        self._owns_image_provider = image_provider is None
        self._image_loaded = image_provider is not None
        #: Image providers of versions with an image model other than the settings'.
        self._image_providers: dict[str, ImageEmbeddingProvider] = {}

    @property
    def chat(self) -> ChatProvider:
        """The configured chat provider, which writes answers (created on first use, shared by
        the process's threads: one client, one rate limiter).

        Raises:
            ProviderRejected: an unknown provider, or its module cannot be imported.
        """
        with self._lock:
            if self._chat is None:
                self._chat = create_chat_provider(self.settings.chat)
            return self._chat

    @property
    def provider(self) -> EmbeddingProvider:
        """The configured embedding provider (created on first use)."""
        with self._lock:
            if self._provider is None:
                self._provider = create_provider(self.settings.embedding)
            return self._provider

    @property
    def image_provider(self) -> ImageEmbeddingProvider | None:
        """The configured image embedding provider (created on first use); None when
        ``DOCVEC_IMAGE_EMBEDDING__PROVIDER=none``.

        Raises:
            ProviderRejected: an unknown provider, or its module cannot be imported.
        """
        with self._lock:
            if not self._image_loaded:
                self._image_provider = create_image_provider(self.settings.image_embedding)
                self._image_loaded = True
            return self._image_provider

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

    # -- index versions ----------------------------------------------------------------------------

    def index_parts(self, ref: VersionRef) -> IndexParts:
        """The provider, store and chunker of one index version (built on first use, kept).

        A version that follows the settings uses the process's own provider and chunker; one
        made with an explicit provider uses what it recorded, with this process's operational
        settings (timeouts, limits, batch size).

        Raises:
            ProviderRejected: the recorded provider cannot be built here.
            ValueError: a recorded chunking this process cannot run (a missing tokenizer).
        """
        spec = ref.spec
        settings_spec = indexes.settings_spec(self.settings)
        embedding_key = _text_key(spec)
        with self._lock:
            if ref.follows_settings or _text_key(settings_spec) == embedding_key:
                # The settings' own provider, below (outside the lock it takes): a version that
                # follows the settings agrees with them (checked at resolution) and is reached
                # the way they say.
                provider = None
            else:
                provider = self._providers.get(embedding_key)
                if provider is None:
                    provider = create_provider(spec.embedding_settings(self.settings.embedding))
                    self._providers[embedding_key] = provider
            chunking_key = json.dumps(spec.chunking, sort_keys=True)
            chunker: Chunker | None = self.chunker
            if spec.chunking != settings_spec.chunking:
                chunker = self._chunkers.get(chunking_key)
                if chunker is None:
                    chunking = spec.chunking_settings()
                    tok = None
                    if chunking.unit == "model_tokens":
                        from app.embeddings import tokenizer_file

                        tok = tokenizer_file(
                            spec.embedding_settings(self.settings.embedding),
                            chunk_size=chunking.chunk_size,
                        )
                    chunker = Chunker.from_settings(chunking, tokenizer_file=tok)
                    self._chunkers[chunking_key] = chunker
        if provider is None:
            provider = self.provider
        assert chunker is not None
        store = self.store_for(ref.collection)
        images = self._image_parts(ref, settings_spec)
        return IndexParts(ref, provider, store, chunker, self._ensure(ref, provider, store), images)

    def _image_parts(self, ref: VersionRef, settings_spec: IndexSpec) -> ImageParts | None:
        """The image provider and image collection of ``ref``; None: it has no image model."""
        collection = ref.image_collection
        image_settings = ref.spec.image_settings(self.settings.image_embedding)
        if collection is None or image_settings is None:
            return None
        key = _image_key(ref.spec)
        provider: ImageEmbeddingProvider | None
        if ref.follows_settings or _image_key(settings_spec) == key:
            provider = self.image_provider
        else:
            with self._lock:
                provider = self._image_providers.get(key)
                if provider is None:
                    provider = create_image_provider(image_settings)
                    if provider is not None:
                        self._image_providers[key] = provider
        if provider is None:
            return None
        store = self.store_for(collection)
        chosen = provider

        def ensure() -> int:
            """Create the image collection for the image model's size once per process.

            Raises:
                DimensionMismatch: the collection exists with another size.
            """
            dim = chosen.dimension
            if self._ready.get(collection) != dim:
                store.ensure_collection(dim)
                self._ready[collection] = dim
            return dim

        return ImageParts(chosen, store, ensure)

    def store_for(self, collection: str) -> VectorStore:
        """The store of ``collection``: the settings' store, or a sibling of it (kept).

        ``DOCVEC_COLLECTION`` names the settings' store, which is the one injected (tests) when
        one is given, whatever its own name.
        """
        root = self.vector_store
        if collection in (root.collection, self.settings.collection):
            return root
        with self._lock:
            store = self._stores.get(collection)
            if store is None:
                store = root.sibling(collection)
                self._stores[collection] = store
            return store

    def drop_store(self, collection: str) -> None:
        """Forget (and close) the sibling store of a dropped collection."""
        with self._lock:
            store = self._stores.pop(collection, None)
            self._ready.pop(collection, None)
        if store is not None:
            store.close()

    def _ensure(
        self, ref: VersionRef, provider: EmbeddingProvider, store: VectorStore
    ) -> Callable[[], int]:
        def ensure() -> int:
            """Create the version's collection for the provider's size once per process and
            learn the size in SQL; returns it.

            Raises:
                IndexMismatch: the provider's vector size is not the version's.
                DimensionMismatch: the collection exists with another size.
            """
            dim = provider.dimension
            if ref.dimensions is not None and ref.dimensions != dim:
                raise IndexMismatch(
                    f"index {ref.label()} holds {ref.dimensions}-dimensional vectors, but its "
                    f"provider {provider.name}:{provider.model} now returns {dim}"
                )
            if self._ready.get(ref.collection) != dim:
                store.ensure_collection(dim)
                self._ready[ref.collection] = dim
            if ref.dimensions is None:
                with self.sessions.begin() as session:
                    indexes.learn_dimensions(session, ref.id, dim)
            return dim

        return ensure

    def active_index(self, session: Session, project: Project) -> IndexParts:
        """The project's active index version and its parts, resolved once (a query in flight
        at a swap keeps the version it resolved).

        Raises:
            IndexMismatch: the version follows the settings and they describe another index.
        """
        ref = indexes.active_version(session, project, self.settings)
        session.commit()  # a first version created just now is visible to every process
        return self.index_parts(ref)

    def project_stores(self, session: Session, project_id: uuid.UUID) -> list[VectorStore]:
        """The stores of every version of the project, their image collections included (a
        delete reaches each)."""
        collections = {self.settings.collection}
        for v in indexes.versions_of(session, project_id):
            collections.add(v.collection)
            image = VersionRef.of(v).image_collection
            if image is not None:
                collections.add(image)
        return [self.store_for(c) for c in sorted(collections)]

    def own_stores(self, session: Session, project_id: uuid.UUID) -> list[VectorStore]:
        """The stores of the collections only this project's versions use (dropped with it),
        with their image collections."""
        own: set[str] = set()
        for v in indexes.versions_of(session, project_id):
            if v.collection == self.settings.collection or indexes.shares_collection(session, v):
                continue
            own.add(v.collection)
            image = VersionRef.of(v).image_collection
            if image is not None:
                own.add(image)
        return [self.store_for(c) for c in sorted(own)]

    def search(
        self,
        session: Session,
        *,
        project: Project,
        query: str,
        top_k: int = 5,
        score_threshold: float | None = None,
        mode: SearchMode = DEFAULT_SEARCH_MODE,
        images: bool = False,
    ) -> list[services.SearchResult]:
        """:func:`app.services.search` on the project's active index version: the query is
        embedded by that version's provider and searched in its collection; with ``images``
        (and a version with an image model, in dense or hybrid mode) it is also embedded by the
        image model and searched among the image vectors, and the rankings fused."""
        index = self.active_index(session, project)
        if mode != "lexical":
            index.ensure()
        image = index.images if images and mode != "lexical" else None
        if image is not None:
            image.ensure()
        return services.search(
            session,
            project=project,
            query=query,
            provider=index.provider,
            store=index.store,
            top_k=top_k,
            score_threshold=score_threshold,
            mode=mode,
            image_provider=image.provider if image is not None else None,
            image_store=image.store if image is not None else None,
            chunk_set=index.version.chunk_set,
        )

    def retriever(
        self, project_id: uuid.UUID
    ) -> Callable[[str, int, SearchMode, float | None], list[services.SearchResult]]:
        """``retrieve(question, top_k, mode, score_threshold)`` over one project's active index
        (:meth:`search` in a session of its own): what an answer retrieves its sources with
        (``app.answers.Retrieve``), for the API route and ``docvec ask`` alike."""

        def retrieve(
            question: str, top_k: int, mode: SearchMode, score_threshold: float | None
        ) -> list[services.SearchResult]:
            with self.sessions() as session:
                return self.search(
                    session,
                    project=services.get_project(session, project_id),
                    query=question,
                    top_k=top_k,
                    score_threshold=score_threshold,
                    mode=mode,
                )

        return retrieve

    def close(self) -> None:
        """Close the vector store (releases Qdrant's local lock), the provider's connections (if
        this runtime built it) and the SQL pool."""
        if self._chat is not None:
            self._chat.close()
        for provider in self._providers.values():
            provider.close()
        self._providers.clear()
        for image_provider in self._image_providers.values():
            image_provider.close()
        self._image_providers.clear()
        if self._owns_image_provider and self._image_provider is not None:
            self._image_provider.close()
        for store in self._stores.values():
            store.close()
        self._stores.clear()
        if self._owns_provider and self._provider is not None:
            self._provider.close()
        if self._store is not None:
            self._store.close()
            self._store = None
        self.engine.dispose()


def _text_key(spec: IndexSpec) -> str:
    """The text model's part of a spec, as a key: versions that agree on it share a provider."""
    return json.dumps(
        {k: v for k, v in spec.embedding.items() if k not in indexes.IMAGE_FIELDS},
        sort_keys=True,
    )


def _image_key(spec: IndexSpec) -> str:
    """The image model's part of a spec, as a key."""
    return json.dumps({k: spec.embedding.get(k) for k in indexes.IMAGE_FIELDS}, sort_keys=True)


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
