"""What a point holds in Qdrant, shared by both Qdrant engines (a server or local mode through
qdrant-client, and Qdrant Edge): the same names and payload, so a collection means the same in
each and their results read alike.

A point is the chunk's dense vector (unnamed) and its BM25 weights (the sparse vector
:data:`LEXICAL_VECTOR`), with the payload of :func:`point_payload`; the ids in it are indexed as
keywords and ``chunk_index`` as an integer, so filtered searches and deletes read the indexes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from app.vectorstore.base import Hit, Point, StoredVector, as_floats, text_sha256

#: Name of the dense vector: unnamed, as in collections made before the lexical index.
DENSE_VECTOR = ""
#: Name of the sparse vector holding a point's BM25 term weights.
LEXICAL_VECTOR = "bm25"
#: Payload fields indexed as keywords (every query filters on ``project_id``).
KEYWORD_INDEXES = ("project_id", "document_id")
#: Payload fields indexed as integers (``delete_document(from_chunk_index=...)`` ranges on it).
INTEGER_INDEXES = ("chunk_index",)


#: Payload field holding the hash of the text a point's vector embeds (not a search field).
TEXT_HASH = "text_sha256"


def point_payload(point: Point) -> dict[str, object]:
    """The payload stored with ``point``: its project, document, chunk index, file name and the
    hash of its text (:func:`~app.vectorstore.base.text_sha256`)."""
    return {
        "project_id": str(point.project_id),
        "document_id": str(point.document_id),
        "chunk_index": int(point.chunk_index),
        "file_name": point.file_name,
        TEXT_HASH: text_sha256(point.text),
    }


def stored_vector(vector: Any, payload: Mapping[str, Any] | None) -> StoredVector | None:
    """A retrieved record's dense vector (unnamed, or in a dict of named vectors) as float32, and
    its text hash; None when it has no dense vector."""
    if isinstance(vector, dict):
        vector = vector.get(DENSE_VECTOR)
    if not isinstance(vector, list):
        return None
    digest = (payload or {}).get(TEXT_HASH)
    return StoredVector(np.asarray(vector, dtype=np.float32), str(digest) if digest else None)


def point_vectors(point: Point, sparse_vector: Callable[..., object]) -> dict[str, Any]:
    """The point's vectors: the dense one as a list of floats (made here, for the batch being
    written: both libraries take lists) and its BM25 weights (empty if the text has no terms) as
    ``sparse_vector(indices=..., values=...)``, the library's sparse-vector class."""
    indices, values = point.lexical().sparse()
    return {
        DENSE_VECTOR: as_floats(point.vector),
        LEXICAL_VECTOR: sparse_vector(indices=indices, values=values),
    }


def hit_from(point_id: Any, score: float, payload: Mapping[str, Any] | None) -> Hit:
    """A search hit from a scored point's id, score and :func:`point_payload`; any other payload
    field goes to ``Hit.extra``."""
    rest = dict(payload or {})
    return Hit(
        id=uuid.UUID(str(point_id)),
        score=float(score),
        document_id=uuid.UUID(str(rest.pop("document_id"))),
        chunk_index=int(rest.pop("chunk_index")),
        file_name=str(rest.pop("file_name")),
        project_id=uuid.UUID(str(rest.pop("project_id"))),
        extra={k: v for k, v in rest.items() if k != TEXT_HASH},
    )
