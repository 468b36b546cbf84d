"""Spend the model only where it must: each distinct chunk text is embedded once per index version.

Before a call to the provider, the chunks' texts are looked up by SHA-256 among the chunk rows of
the same project and chunk set; their points in the index version's own collection are read
back (:meth:`VectorStore.vectors`), and a point's vector is taken only when the point's payload
says it embeds exactly that text (every point carries its text's SHA-256) — so a vector is never
lent to another text, whatever a failed run left behind. Found vectors are used instead of
embedding again; of the rest, each distinct text is embedded once and its vector given to every
chunk that has it. So re-vectorizing an unchanged document embeds nothing, an edited one only its
changed chunks, and repeated pages, headers and templates cost one embedding. Reuse never crosses
index versions: vectors come only from the version's own collection, found through its own records.

LangChain's ``index()`` skips unchanged chunks by hash, LlamaIndex's ``IngestionCache`` keys nodes
by content and transformation, Dify caches embeddings by (model, text hash); here the vector store
is the cache, so nothing is stored twice.

Vectors stay float32 throughout (:data:`app.embeddings.Vectors`): the call's vectors are one
``n`` x ``dimension`` matrix, filled from the provider's matrix and the stored vectors.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Document, DocumentChunk
from app.embeddings import EmbeddingProvider, EmbeddingUsage, Vectors
from app.vectorstore import Vector, VectorStore
from app.vectorstore.base import text_sha256

#: Hashes per SQL ``IN`` list: bounds one statement's parameters (SQLite allows 32,766).
_HASH_PAGE = 1000
#: Points asked for per text: a repeated text has many rows, and one good point is enough.
_CANDIDATES = 3


def text_hash(text: str) -> str:
    """Hex SHA-256 of the chunk's UTF-8 text: what ``document_chunks.content_sha256`` and the
    point's payload hold (:func:`app.vectorstore.base.text_sha256`)."""
    return text_sha256(text)


@dataclass
class Embedded:
    """The vectors of a call's chunks, in order (a float32 ``n`` x ``dimension`` matrix, row ``i``
    the ``i``-th chunk of the groups laid end to end), and what they cost: ``embedded``
    inputs sent to the provider; per group (document) the chunks ``reused`` from the store and
    ``shared`` with an earlier chunk of the call, and ``owner_ranges``, the ``[start, end)``
    range of the provider call's inputs that the group brought (for charging it the call's
    usage)."""

    vectors: Vectors
    embedded: int
    reused: list[int]
    shared: list[int]
    owner_ranges: list[tuple[int, int]]


def stored_vectors(
    sessions: sessionmaker[Session],
    store: VectorStore,
    *,
    project_id: uuid.UUID,
    chunk_set: str,
    hashes: Sequence[str],
) -> dict[str, Vector]:
    """``{hash: vector}`` (float32, the collection's dimension) for the hashes whose text some
    chunk of the project (in this chunk set) has and whose point, in ``store`` — the index
    version's own collection — says it embeds exactly that text (the point's payload hash): a
    point rewritten or left behind by a failed run never lends a vector to another text."""
    wanted = sorted(set(hashes))
    if not wanted:
        return {}
    candidates: dict[uuid.UUID, str] = {}
    per_hash: dict[str, int] = {}
    with sessions() as session:
        for i in range(0, len(wanted), _HASH_PAGE):
            page = wanted[i : i + _HASH_PAGE]
            rows = session.execute(
                select(DocumentChunk.id, DocumentChunk.content_sha256)
                .join(Document, Document.id == DocumentChunk.document_id)
                .where(
                    Document.project_id == project_id,
                    DocumentChunk.chunk_set == chunk_set,
                    DocumentChunk.content_sha256.in_(page),
                )
            ).all()
            for cid, digest in rows:
                # A few candidates per text: one of them may be a point not written yet.
                if digest is not None and per_hash.get(digest, 0) < _CANDIDATES:
                    per_hash[digest] = per_hash.get(digest, 0) + 1
                    candidates[cid] = digest
    if not candidates:
        return {}
    found: dict[str, Vector] = {}
    for cid, stored in store.vectors(candidates).items():
        digest = candidates[cid]
        if stored.text_sha256 == digest and digest not in found:
            found[digest] = stored.vector
    return found


def version_lookup(
    sessions: sessionmaker[Session],
    store: VectorStore,
    *,
    project_id: uuid.UUID,
    chunk_set: str,
) -> Callable[[Sequence[str]], dict[str, Vector]]:
    """The ``stored`` argument of :func:`embed_reusing` for one index version: ``hashes ->
    {hash: vector}`` by :func:`stored_vectors` in the version's collection and chunk set."""

    def lookup(hashes: Sequence[str]) -> dict[str, Vector]:
        return stored_vectors(
            sessions, store, project_id=project_id, chunk_set=chunk_set, hashes=hashes
        )

    return lookup


def embed_reusing(
    groups: Sequence[Sequence[str]],
    *,
    provider: EmbeddingProvider,
    stored: Callable[[Sequence[str]], dict[str, Vector]],
    usage: EmbeddingUsage,
    on_batch: Callable[[int], None] | None = None,
) -> Embedded:
    """Vectors for the texts of ``groups`` (one group per document, in order), embedding each
    distinct text that ``stored`` does not know once.

    Args:
        groups: the chunk texts of each document.
        provider: embeds what is left (``embed_matrix``).
        stored: ``hashes -> {hash: vector}`` of texts already embedded in the index version
            (:func:`stored_vectors`).
        usage: filled by the provider call.
        on_batch: progress, in chunks: called once with the chunks that need no embedding, then
            by the provider per batch.

    Returns:
        :class:`Embedded`, its ``vectors`` of shape ``(sum of the groups' lengths, dimension)``
        (no chunk at all: ``(0, d)``, ``d`` the provider's dimension if known without a call);
        ``owner_ranges[g]`` is the ``[start, end)`` range of the provider
        call's inputs that group ``g`` brought (each distinct text is charged to the first group
        that has it, and groups bring their texts in order, so the ranges are contiguous).

    Raises:
        Whatever ``provider.embed_matrix`` or the store raises.
    """
    hashes = [[text_hash(t) for t in g] for g in groups]
    known = stored([h for g in hashes for h in g])
    order: list[str] = []  # distinct texts to embed, in first-seen order
    position: dict[str, int] = {}
    reused = [0] * len(groups)
    shared = [0] * len(groups)
    ranges: list[tuple[int, int]] = []
    for gi, (texts, digests) in enumerate(zip(groups, hashes, strict=True)):
        start = len(order)
        for text, digest in zip(texts, digests, strict=True):
            if digest in known:
                reused[gi] += 1
            elif digest in position:
                shared[gi] += 1
            else:
                position[digest] = len(order)
                order.append(text)
        ranges.append((start, len(order)))
    if on_batch is not None and (sum(reused) + sum(shared)):
        on_batch(sum(reused) + sum(shared))
    fresh = provider.embed_matrix(order, usage=usage, on_batch=on_batch)
    flat = [d for digests in hashes for d in digests]
    if len(order) == len(flat):
        # Every chunk embedded, each once, in order: the provider's matrix is the answer.
        return Embedded(fresh, len(order), reused, shared, ranges)
    width = fresh.shape[1] if order else len(next(iter(known.values()), ()))
    vectors = np.empty((len(flat), width), dtype=np.float32)
    for row, digest in enumerate(flat):
        vectors[row] = known[digest] if digest in known else fresh[position[digest]]
    return Embedded(vectors, len(order), reused, shared, ranges)
