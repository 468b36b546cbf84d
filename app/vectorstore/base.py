"""The vector-store interface shared by Qdrant, Qdrant Edge and pgvector (DESIGN §4).

Every implementation holds all projects' points in one collection (Qdrant), shard (Qdrant Edge)
or table (pgvector), cosine distance, vector size fixed when the collection is created. Every
query is filtered by ``project_id`` on the server side (DESIGN §2, invariant 5).

Each point also carries the lexical side of its chunk: the BM25 weights of its terms
(:mod:`app.lexical`), written in the same write as the dense vector, so that a re-vectorize or a
delete cannot leave a lexical hit behind. Three ways to search (:data:`SearchMode`):

- ``dense``: cosine similarity of the query's embedding (``VectorStore.search``);
- ``lexical``: BM25 over the project's chunks (``VectorStore.search_lexical``);
- ``hybrid``: both rankings fused by Reciprocal Rank Fusion (``VectorStore.search_hybrid``).
"""

from __future__ import annotations

import dataclasses
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from app.errors import DimensionMismatch
from app.lexical import LexicalVector, document_vector

#: How a search ranks chunks: by the dense vector, by BM25, or by both fused.
SearchMode = Literal["dense", "lexical", "hybrid"]
SEARCH_MODES: tuple[SearchMode, ...] = ("dense", "lexical", "hybrid")
#: The mode used when a caller names none: the best of the three on BEIR SciFact measured by
#: ``docvec eval`` (README, "Measuring retrieval quality").
DEFAULT_SEARCH_MODE: SearchMode = "hybrid"
#: RRF's constant k: a chunk at rank r of a ranking gets ``1 / (RRF_K + r)`` (r from 1).
#: Cormack, Clarke and Büttcher ("Reciprocal Rank Fusion outperforms Condorcet and individual Rank
#: Learning Methods", SIGIR 2009) chose 60 for fusing many long TREC runs. Fusing two rankings
#: of chunks, a small k lets a chunk that one side ranks first outweigh chunks both sides rank
#: low. Tuned on BEIR SciFact-train (the only data tuned on): nDCG@10 is flat for k from 1 to 10
#: (72.2-72.3) and falls to 71.3 at 60; 5 is the middle of that plateau.
RRF_K = 5
#: Chunks each ranking contributes to a hybrid search (at least ``top_k``): a chunk ranked deeper
#: than this on one side adds nothing from that side.
HYBRID_CANDIDATES = 100

#: Namespace of deterministic point ids (DESIGN §2, invariant 2). Never change it: existing
#: points would no longer be overwritten by re-runs.
POINT_NAMESPACE = uuid.UUID("6f1c1c8e-3b0a-5d7e-9c43-2f0d8a6b1e55")


def point_id(document_id: uuid.UUID, chunk_index: int) -> uuid.UUID:
    """Deterministic id of a chunk's point.

    ``uuid5(POINT_NAMESPACE, f"{document_id}:{chunk_index}")``.

    A retried or duplicated job computes the same ids and so overwrites, never adds, points.
    """
    return uuid.uuid5(POINT_NAMESPACE, f"{document_id}:{chunk_index}")


def dimension_mismatch(collection: str, existing: int, wanted: int) -> DimensionMismatch:
    """The error for vectors of ``wanted`` dimensions offered to a collection of ``existing`` ones.

    One wording for every store, naming both sizes and the remedy (DESIGN §4).
    """
    return DimensionMismatch(
        f"the collection '{collection}' holds {existing}-dim vectors but the provider makes "
        f"{wanted}-dim ones; use another DOCVEC_COLLECTION and re-vectorize the projects, "
        "or switch back the model"
    )


def check_dimensions(
    collection: str, dimension: int | None, vectors: Iterable[Sequence[float]]
) -> None:
    """Raise :func:`dimension_mismatch` if any of ``vectors`` is not ``dimension`` long.

    ``dimension=None`` (the collection's size is not known yet) checks nothing.
    """
    if dimension is None:
        return
    for vector in vectors:
        if len(vector) != dimension:
            raise dimension_mismatch(collection, dimension, len(vector))


@dataclass(frozen=True, slots=True)
class Point:
    """One chunk's vector, text and payload.

    ``vector`` has exactly the collection's dimension; it need not be normalised (cosine distance).
    ``text`` is the chunk's text: the store writes its lexical terms (:meth:`lexical`) in the same
    write as the vector. It is not stored as text (SQL holds the chunk's content).
    """

    id: uuid.UUID
    vector: Sequence[float]
    project_id: uuid.UUID
    document_id: uuid.UUID
    chunk_index: int
    file_name: str
    text: str = ""

    def lexical(self) -> LexicalVector:
        """The BM25 weights of the chunk's terms (empty when the text has no terms)."""
        return document_vector(self.text)


@dataclass(frozen=True, slots=True)
class Hit:
    """A search result: the point id, its score, where each ranking put it, and its payload.

    ``score`` depends on the search: the cosine similarity in [-1, 1] (dense), the BM25 score,
    positive and unbounded (lexical), or the RRF score ``sum(1 / (RRF_K + rank))`` over the
    rankings that found the chunk (hybrid). ``dense_rank``/``lexical_rank`` are the chunk's
    1-based places in the dense and lexical rankings (None: not among that ranking's
    candidates), ``dense_score``/``lexical_score`` its scores there.
    """

    id: uuid.UUID
    score: float
    document_id: uuid.UUID
    chunk_index: int
    file_name: str
    project_id: uuid.UUID
    extra: dict[str, object] = field(default_factory=dict)
    dense_rank: int | None = None
    lexical_rank: int | None = None
    dense_score: float | None = None
    lexical_score: float | None = None


def ranked(hits: Sequence[Hit], side: Literal["dense", "lexical"]) -> list[Hit]:
    """``hits`` (best first) with their rank and score recorded as ``side``'s."""
    if side == "dense":
        return [
            dataclasses.replace(h, dense_rank=r, dense_score=h.score) for r, h in enumerate(hits, 1)
        ]
    return [
        dataclasses.replace(h, lexical_rank=r, lexical_score=h.score) for r, h in enumerate(hits, 1)
    ]


def fuse_rrf(
    dense: Sequence[Hit], lexical: Sequence[Hit], *, top_k: int, k: int = RRF_K
) -> list[Hit]:
    """Reciprocal Rank Fusion of two rankings (each best first): the ``top_k`` best, best first.

    A chunk's fused score is ``sum(1 / (k + rank))`` over the rankings it is in (rank from 1);
    ties go to the better single rank, then to the smaller id, so the order is deterministic.
    Every hit carries both ranks and both scores (None where a ranking lacks the chunk).
    """
    merged: dict[uuid.UUID, Hit] = {}
    for r, h in enumerate(dense, 1):
        merged[h.id] = dataclasses.replace(
            h, score=1.0 / (k + r), dense_rank=r, dense_score=h.score
        )
    for r, h in enumerate(lexical, 1):
        seen = merged.get(h.id)
        if seen is None:
            merged[h.id] = dataclasses.replace(
                h, score=1.0 / (k + r), lexical_rank=r, lexical_score=h.score
            )
        else:
            merged[h.id] = dataclasses.replace(
                seen, score=seen.score + 1.0 / (k + r), lexical_rank=r, lexical_score=h.score
            )

    def order(h: Hit) -> tuple[float, int, str]:
        best = min(r for r in (h.dense_rank, h.lexical_rank) if r is not None)
        return (-h.score, best, str(h.id))

    return sorted(merged.values(), key=order)[: max(top_k, 0)]


class VectorStore(ABC):
    """A collection of points, filtered by project on the server side.

    Errors: connection problems raise :class:`app.errors.VectorStoreUnavailable` (transient);
    a vector size other than the collection's raises :class:`app.errors.DimensionMismatch`.
    """

    #: Short name shown in status output: ``qdrant``, ``qdrant-edge`` or ``pgvector``.
    name: str = ""

    @abstractmethod
    def ensure_collection(self, dimension: int) -> None:
        """Create the collection for ``dimension``-sized vectors if missing (idempotent).

        Raises:
            DimensionMismatch: the collection exists with another size; the message names both
                sizes and the remedy.
        """

    @abstractmethod
    def upsert(self, points: Sequence[Point]) -> None:
        """Insert or overwrite ``points`` by id (idempotent)."""

    @abstractmethod
    def delete_document(self, document_id: uuid.UUID, *, from_chunk_index: int = 0) -> None:
        """Delete the document's points whose ``chunk_index >= from_chunk_index``.

        ``from_chunk_index=n`` removes the stale tail after a re-vectorized document shrank to
        n chunks.
        """

    @abstractmethod
    def delete_project(self, project_id: uuid.UUID) -> None:
        """Delete every point of the project."""

    @abstractmethod
    def search(
        self,
        project_id: uuid.UUID,
        vector: Sequence[float],
        *,
        top_k: int,
        score_threshold: float | None = None,
    ) -> list[Hit]:
        """The ``top_k`` points of ``project_id`` most similar to ``vector``, best first.

        ``score_threshold`` drops hits with cosine similarity below it. ``score`` and
        ``dense_score`` are the cosine similarity, ``dense_rank`` the place from 1.
        """

    @abstractmethod
    def search_lexical(self, project_id: uuid.UUID, text: str, *, top_k: int) -> list[Hit]:
        """The ``top_k`` points of ``project_id`` with the best BM25 score for ``text``.

        Only chunks sharing at least one term with ``text`` are returned, best first; ``score``
        is the BM25 score (positive). The IDF counts only the project's chunks, so another
        project's texts never change the ranking. A query without terms (only stop words or
        punctuation) finds nothing. ``lexical_score``/``lexical_rank`` repeat the score and give
        the place from 1.
        """

    def search_hybrid(
        self,
        project_id: uuid.UUID,
        vector: Sequence[float],
        text: str,
        *,
        top_k: int,
        score_threshold: float | None = None,
        candidates: int = HYBRID_CANDIDATES,
        rrf_k: int = RRF_K,
    ) -> list[Hit]:
        """The ``top_k`` points of ``project_id`` by the RRF fusion of the dense and lexical ranks.

        Each ranking contributes its ``max(top_k, candidates)`` best chunks; ``score_threshold``
        (cosine similarity) drops chunks from the dense ranking only, so a lexical match still
        counts. ``score`` is the fused score; see :class:`Hit` for the per-side fields.
        """
        if top_k <= 0:
            return []
        depth = max(top_k, candidates)
        dense, lexical = self._hybrid_candidates(
            project_id, vector, text, depth=depth, score_threshold=score_threshold
        )
        return fuse_rrf(dense, lexical, top_k=top_k, k=rrf_k)

    def _hybrid_candidates(
        self,
        project_id: uuid.UUID,
        vector: Sequence[float],
        text: str,
        *,
        depth: int,
        score_threshold: float | None,
    ) -> tuple[list[Hit], list[Hit]]:
        """The dense and the lexical ranking, ``depth`` deep each (a store may batch the two)."""
        dense = self.search(project_id, vector, top_k=depth, score_threshold=score_threshold)
        return dense, self.search_lexical(project_id, text, top_k=depth)

    @abstractmethod
    def count(
        self, *, project_id: uuid.UUID | None = None, document_id: uuid.UUID | None = None
    ) -> int:
        """Number of points, optionally of one project or one document."""

    @abstractmethod
    def point_ids(self, *, document_ids: Iterable[uuid.UUID] | None = None) -> set[uuid.UUID]:
        """Ids of all points, or of the given documents' points (for reconcile and tests)."""

    @abstractmethod
    def points_without_lexical(self) -> set[uuid.UUID]:
        """Ids of points that have a dense vector but no lexical side.

        Points written by docvec always have both (a chunk without terms has an empty lexical
        side); points written before the lexical index existed have none until re-vectorized.
        ``reconcile`` reports them (DESIGN §2, invariant 6).
        """

    @abstractmethod
    def delete_points(self, ids: Iterable[uuid.UUID]) -> None:
        """Delete points by id (reconcile removes orphans this way); unknown ids are ignored."""

    @abstractmethod
    def ping(self) -> None:
        """Raise :class:`app.errors.VectorStoreUnavailable` if the store cannot be reached."""

    def optimize(self) -> None:  # noqa: B027 - optional hook
        """Build the search indexes of what was written since the last call (a no-op here).

        A store whose index is not kept up to date by its writes (Qdrant Edge builds its HNSW
        index only when asked) does it here, blocking, possibly for minutes. Call it after an
        ingest, never while serving a request. Points and search results are unchanged; only the
        search latency is.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and locks."""
