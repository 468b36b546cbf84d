"""Vector stores behind one interface (DESIGN §4): Qdrant (default) and PostgreSQL + pgvector.

``create_vector_store(settings)`` picks the implementation named by ``settings.vector_store``.
The implementations import their client libraries only when chosen.
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
    VectorStore,
    fuse_rrf,
    point_id,
)

if TYPE_CHECKING:
    from app.vectorstore.pgvector import PgVectorStore
    from app.vectorstore.qdrant import QdrantStore


def _qdrant(settings: Settings) -> VectorStore:
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
        VectorStoreLocked: Qdrant local mode and another process holds the folder.
    """
    try:
        build = STORES[settings.vector_store]
    except KeyError:
        raise ValueError(
            f"unknown vector store {settings.vector_store!r}; choose one of {sorted(STORES)}"
        ) from None
    return build(settings)


def __getattr__(name: str) -> Any:
    """Import ``QdrantStore`` / ``PgVectorStore`` on first use, not with the package."""
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
    "Hit",
    "PgVectorStore",
    "Point",
    "QdrantStore",
    "SearchMode",
    "VectorStore",
    "create_vector_store",
    "fuse_rrf",
    "point_id",
]
