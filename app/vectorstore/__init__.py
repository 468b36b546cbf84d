"""Vector stores behind one interface (DESIGN §4): Qdrant (default) and PostgreSQL + pgvector.

``create_vector_store(settings)`` picks the implementation named by ``settings.vector_store``.
"qdrant" is a Qdrant server (``QdrantStore``) when ``qdrant_url`` is set, else an embedded engine:
Qdrant Edge (``EdgeStore``, the default) or qdrant-client's local mode (``QdrantStore`` on a
folder), as ``qdrant_local_engine`` says. The implementations import their libraries only when
chosen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from app.config import Settings
from app.vectorstore.base import (
    DEFAULT_SEARCH_MODE,
    HYBRID_CANDIDATES,
    RRF_K,
    SEARCH_MODES,
    Hit,
    Point,
    SearchMode,
    Vector,
    VectorStore,
    fuse_rrf,
    image_point_id,
    point_id,
)

if TYPE_CHECKING:
    from app.vectorstore.edge import EdgeStore
    from app.vectorstore.pgvector import PgVectorStore
    from app.vectorstore.qdrant import QdrantStore


def _qdrant(settings: Settings) -> VectorStore:
    if not settings.qdrant_url and settings.qdrant_local_engine == "edge":
        from app.vectorstore.edge import EdgeStore

        return EdgeStore(collection=settings.collection, path=settings.edge_path)
    from app.vectorstore.qdrant import QdrantStore

    api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    return QdrantStore(
        collection=settings.collection,
        url=settings.qdrant_url,
        api_key=api_key,
        path=None if settings.qdrant_url else settings.qdrant_path,
    )


def _pgvector(settings: Settings) -> VectorStore:
    from app.vectorstore.pgvector import PgVectorStore

    return PgVectorStore(url=settings.pgvector_sqlalchemy_url, table=settings.collection)


#: ``settings.vector_store`` -> builder. The one place that maps store names to classes.
STORES: dict[str, Callable[[Settings], VectorStore]] = {
    "qdrant": _qdrant,
    "pgvector": _pgvector,
}


def create_vector_store(settings: Settings) -> VectorStore:
    """The vector store ``settings`` configure; the collection is not created yet.

    Call ``ensure_collection(provider.dimension)`` once at start-up.

    Raises:
        ValueError: unknown ``vector_store``, or pgvector without a PostgreSQL URL.
        VectorStoreLocked: an embedded Qdrant engine whose folder another process holds.
    """
    try:
        build = STORES[settings.vector_store]
    except KeyError:
        raise ValueError(
            f"unknown vector store {settings.vector_store!r}; choose one of {sorted(STORES)}"
        ) from None
    return build(settings)


def __getattr__(name: str) -> Any:
    """Import the store classes (``QdrantStore``, ``EdgeStore``, ...) on first use only."""
    if name == "EdgeStore":
        from app.vectorstore.edge import EdgeStore

        return EdgeStore
    if name == "QdrantStore":
        from app.vectorstore.qdrant import QdrantStore

        return QdrantStore
    if name == "PgVectorStore":
        from app.vectorstore.pgvector import PgVectorStore

        return PgVectorStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_SEARCH_MODE",
    "HYBRID_CANDIDATES",
    "RRF_K",
    "SEARCH_MODES",
    "STORES",
    "EdgeStore",
    "Hit",
    "PgVectorStore",
    "Point",
    "QdrantStore",
    "SearchMode",
    "Vector",
    "VectorStore",
    "create_vector_store",
    "fuse_rrf",
    "image_point_id",
    "point_id",
]
