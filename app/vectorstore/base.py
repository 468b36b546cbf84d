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

:class:`VectorStore` owns what every store does alike, so that the stores cannot drift apart: the
dimension check, the guards (a collection never created reads as empty, ``top_k <= 0`` and a query
without terms find nothing), the paging of id lists, the ranks and the fusion. A store implements
only its primitives (``_create_collection``, ``_exists``, ``_upsert``, ``_delete``,
``_delete_points``, ``_query_dense``, ``_query_lexical``, ``_count``, ``_ids``, ``ping``), each
called with arguments the base has already checked, and may override ``_has_lexical``,
``_query_both`` (to batch the two rankings of a hybrid search), ``optimize`` and ``close``. Which
points a count, listing or delete touches travels as a :class:`Where`. The two Qdrant engines
share their primitives in :mod:`app.vectorstore.qdrant_family`.

Vectors arrive as float32 arrays (:data:`Vector`: a row of the provider's ``n`` x ``dimension``
matrix, usually a view into it) and become what each client takes only at the boundary, batch by
batch (:func:`as_floats`): so a document's vectors are held at 1.5 KiB per 384 dimensions, and
lists of Python floats (~12 KiB) exist only for the batch being written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, TypeAlias, TypeVar

import numpy as np
from numpy.typing import NDArray

from app.errors import DimensionMismatch
from app.lexical import LexicalVector, document_vector, query_vector

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
#: and lower at 60 (figures: README, "Measuring retrieval quality"); 5 is mid-plateau.
RRF_K = 5
#: Chunks each ranking contributes to a hybrid search (at least ``top_k``): a chunk ranked deeper
#: than this on one side adds nothing from that side.
HYBRID_CANDIDATES = 100

#: Ids per primitive call when the base pages a list of them (point ids to delete, document ids to
#: list): bounds one Qdrant filter or id selector and one SQL array parameter to tens of KB, far
#: below Qdrant's 32 MiB request limit, while keeping calls few.
ID_PAGE = 1000

#: Namespace of deterministic point ids (DESIGN §2, invariant 2). Never change it: existing
#: points would no longer be overwritten by re-runs.
POINT_NAMESPACE = uuid.UUID("6f1c1c8e-3b0a-5d7e-9c43-2f0d8a6b1e55")


#: One dense vector: float32 of shape ``(dimension,)`` (a row of an ``n`` x ``dimension`` matrix).
Vector: TypeAlias = NDArray[np.float32]
#: A dense vector as the stores take it: :data:`Vector`, or a sequence of floats (a query, a
#: caller that holds lists).
VectorLike: TypeAlias = Vector | Sequence[float]


def as_floats(vector: VectorLike) -> list[float]:
    """``vector`` as a new list of Python floats, what a client's JSON or SQL text takes: a float32
    array's values widened exactly (``tolist``), a sequence's values as they are."""
    if isinstance(vector, np.ndarray):
        values: list[float] = vector.tolist()
        return values
    return [float(x) for x in vector]


def point_id(document_id: uuid.UUID, chunk_index: int, chunk_set: str = "") -> uuid.UUID:
    """Deterministic id of a chunk's point (and of its ``document_chunks`` row).

    ``uuid5(POINT_NAMESPACE, f"{document_id}:{chunk_index}")`` for the chunks of a project's
    first chunking (``chunk_set=""``, the ids of every point made before index versions), and
    ``uuid5(POINT_NAMESPACE, f"{document_id}:{chunk_set}:{chunk_index}")`` for the chunks of an
    index version with another chunking, so both sets of rows can live side by side.

    A retried or duplicated job computes the same ids and so overwrites, never adds, points.
    """
    if chunk_set:
        return uuid.uuid5(POINT_NAMESPACE, f"{document_id}:{chunk_set}:{chunk_index}")
    return uuid.uuid5(POINT_NAMESPACE, f"{document_id}:{chunk_index}")


#: Namespace of the image collections' point ids (README, Images): apart from the chunks', so an
#: image point's id never equals a chunk's (search fuses the two rankings by id).
IMAGE_POINT_NAMESPACE = uuid.UUID("2b4f0c6e-8d1a-5e3b-a7c9-41d6e2f0b983")


def image_point_id(document_id: uuid.UUID, page_index: int) -> uuid.UUID:
    """Deterministic id of the image vector of page ``page_index`` (0-based) of an image
    document: ``uuid5(IMAGE_POINT_NAMESPACE, f"{document_id}:{page_index}")``. In an image
    collection a point's ``chunk_index`` is that page index, so ``delete_document(document_id,
    from_chunk_index=n)`` keeps the first ``n`` pages."""
    return uuid.uuid5(IMAGE_POINT_NAMESPACE, f"{document_id}:{page_index}")


def text_sha256(text: str) -> str:
    """Hex SHA-256 of a chunk's UTF-8 text. Each point carries the hash of the text its vector
    embeds, so a vector read back for reuse is taken only for exactly that text
    (app/pipeline/reuse.py), whatever happened to the chunk rows meanwhile."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class StoredVector(NamedTuple):
    """A point's dense vector (float32, the collection's dimension) and the hash of the text it
    embeds (None: written before points carried it)."""

    vector: Vector
    text_sha256: str | None


def dimension_mismatch(collection: str, existing: int, wanted: int) -> DimensionMismatch:
    """The error for vectors of ``wanted`` dimensions offered to a collection of ``existing`` ones.

    One wording for every store, naming both sizes and the remedy (DESIGN §4).
    """
    return DimensionMismatch(
        f"the collection '{collection}' holds {existing}-dim vectors but the provider makes "
        f"{wanted}-dim ones; change models with a new index version (`docvec index create`), "
        "which builds its own collection, or switch back the model"
    )


def parse_dimension_error(
    collection: str, pattern: re.Pattern[str], text: str
) -> DimensionMismatch | None:
    """The :func:`dimension_mismatch` an engine's error ``text`` reports, or None if it is another.

    ``pattern`` is the engine's wording of a wrong vector size, its first group the collection's
    size and its second the size offered (Qdrant: "expected dim: N, got M"; pgvector: "expected N
    dimensions, not M").
    """
    found = pattern.search(text)
    if found is None:
        return None
    return dimension_mismatch(collection, int(found.group(1)), int(found.group(2)))


def check_dimensions(collection: str, dimension: int | None, vectors: Iterable[VectorLike]) -> None:
    """Raise :func:`dimension_mismatch` if any of ``vectors`` is not ``dimension`` long.

    ``dimension=None`` (the collection's size is not known yet) checks nothing.
    """
    if dimension is None:
        return
    for vector in vectors:
        if len(vector) != dimension:
            raise dimension_mismatch(collection, dimension, len(vector))


_T = TypeVar("_T")


def batches(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    """``items`` in consecutive slices of ``size`` (the last one shorter); none if ``items`` is
    empty."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True, slots=True)
class Where:
    """Which points a count, a listing or a delete touches: those meeting every condition given.

    ``Where()`` is every point of the collection. A store translates it into its own filter (a
    Qdrant ``Filter``, a SQL ``WHERE``).
    """

    project_id: uuid.UUID | None = None
    document_id: uuid.UUID | None = None
    #: The point belongs to any of these documents (at most :data:`ID_PAGE` of them).
    document_ids: tuple[uuid.UUID, ...] | None = None
    #: ``chunk_index >= from_chunk_index``.
    from_chunk_index: int | None = None
    #: Only points without a lexical side (written before the lexical index existed).
    without_lexical: bool = False

    def equals(self) -> list[tuple[str, uuid.UUID]]:
        """The ``(field, value)`` conditions among ``project_id`` and ``document_id``, in that
        order."""
        pairs = (("project_id", self.project_id), ("document_id", self.document_id))
        return [(name, value) for name, value in pairs if value is not None]


@dataclass(frozen=True, slots=True)
class Point:
    """One chunk's vector, text and payload.

    ``vector`` has exactly the collection's dimension; it need not be normalised (cosine distance).
    The pipeline gives a float32 row of its ``n`` x ``dimension`` matrix (a view: no copy); a
    sequence of floats is taken too. The store converts it per upsert batch (:func:`as_floats`).
    ``text`` is the chunk's text: the store writes its lexical terms (:meth:`lexical`) in the same
    write as the vector. It is not stored as text (SQL holds the chunk's content).
    """

    id: uuid.UUID
    vector: VectorLike
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

    The public methods are written here, once; a store implements the private primitives below
    them. A collection that was never created reads as empty and deletes from it do nothing.

    Args:
        collection: the collection's name (``DOCVEC_COLLECTION``), as error messages name it.

    Errors: connection problems raise :class:`app.errors.VectorStoreUnavailable` (transient);
    a vector size other than the collection's raises :class:`app.errors.DimensionMismatch`.
    """

    #: Short name shown in status output: ``qdrant``, ``qdrant-edge`` or ``pgvector``.
    name: str = ""

    def __init__(self, *, collection: str) -> None:
        self.collection = collection
        #: The collection's vector size once ``ensure_collection`` ran here (None: not known, and
        #: the store's own refusal of a wrong size is the check).
        self._dimension: int | None = None

    # -- collection ------------------------------------------------------------------------------

    def ensure_collection(self, dimension: int) -> None:
        """Create the collection for ``dimension``-sized vectors if missing (idempotent).

        From then on every vector written or searched is checked against ``dimension`` before
        it reaches the store.

        Raises:
            DimensionMismatch: the collection exists with another size; the message names both
                sizes and the remedy.
        """
        self._create_collection(dimension)
        self._dimension = dimension

    # -- writes ----------------------------------------------------------------------------------

    def upsert(self, points: Sequence[Point]) -> None:
        """Insert or overwrite ``points`` by id (idempotent); no points, no call.

        Raises:
            DimensionMismatch: a vector's length differs from the collection's size.
        """
        check_dimensions(self.collection, self._dimension, (p.vector for p in points))
        if points:
            self._upsert(points)

    def delete_document(self, document_id: uuid.UUID, *, from_chunk_index: int = 0) -> None:
        """Delete the document's points whose ``chunk_index >= from_chunk_index``.

        ``from_chunk_index=n`` removes the stale tail after a re-vectorized document shrank to
        n chunks.
        """
        if self._exists():
            self._delete(Where(document_id=document_id, from_chunk_index=from_chunk_index))

    def delete_project(self, project_id: uuid.UUID) -> None:
        """Delete every point of the project."""
        if self._exists():
            self._delete(Where(project_id=project_id))

    def delete_points(self, ids: Iterable[uuid.UUID]) -> None:
        """Delete points by id (reconcile removes orphans this way), :data:`ID_PAGE` per call;
        unknown ids are ignored."""
        wanted = list(ids)
        if not wanted or not self._exists():
            return
        for page in batches(wanted, ID_PAGE):
            self._delete_points(page)

    # -- searches --------------------------------------------------------------------------------

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

        Raises:
            DimensionMismatch: ``vector`` has another length than the collection's size.
        """
        check_dimensions(self.collection, self._dimension, [vector])
        if top_k <= 0 or not self._exists():
            return []
        hits = self._query_dense(project_id, vector, limit=top_k, score_threshold=score_threshold)
        return ranked(hits, "dense")

    def search_lexical(self, project_id: uuid.UUID, text: str, *, top_k: int) -> list[Hit]:
        """The ``top_k`` points of ``project_id`` with the best BM25 score for ``text``.

        Only chunks sharing at least one term with ``text`` are returned, best first; ``score``
        is the BM25 score (positive). The IDF counts only the project's chunks, so another
        project's texts never change the ranking. A query without terms (only stop words or
        punctuation) finds nothing, and so does a collection without a lexical side.
        ``lexical_score``/``lexical_rank`` repeat the score and give the place from 1.
        """
        query = query_vector(text)
        if top_k <= 0 or not query or not self._has_lexical():
            return []
        return ranked(self._query_lexical(project_id, query, limit=top_k), "lexical")

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

        Raises:
            DimensionMismatch: ``vector`` has another length than the collection's size.
        """
        if top_k <= 0:
            return []
        check_dimensions(self.collection, self._dimension, [vector])
        if not self._exists():
            return []
        query = query_vector(text)
        dense, lexical = self._query_both(
            project_id,
            vector,
            query if query and self._has_lexical() else None,
            limit=max(top_k, candidates),
            score_threshold=score_threshold,
        )
        return fuse_rrf(dense, lexical, top_k=top_k, k=rrf_k)

    # -- inventory -------------------------------------------------------------------------------

    def count(
        self, *, project_id: uuid.UUID | None = None, document_id: uuid.UUID | None = None
    ) -> int:
        """Exact number of points, optionally of one project and/or one document."""
        if not self._exists():
            return 0
        return self._count(Where(project_id=project_id, document_id=document_id))

    def point_ids(self, *, document_ids: Iterable[uuid.UUID] | None = None) -> set[uuid.UUID]:
        """Ids of all points, or of the given documents' points (an empty iterable gives none).

        The documents are asked for :data:`ID_PAGE` at a time.
        """
        if not self._exists():
            return set()
        if document_ids is None:
            return self._ids(Where())
        ids: set[uuid.UUID] = set()
        for page in batches(list(document_ids), ID_PAGE):
            ids |= self._ids(Where(document_ids=tuple(page)))
        return ids

    def vectors(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, StoredVector]:
        """The dense vectors of the points among ``ids`` that exist, each with the hash of the
        text it embeds (``{id: StoredVector}``, vectors of the collection's size),
        :data:`ID_PAGE` per call; unknown ids are left out. What an unchanged chunk reuses instead
        of being embedded again (app/pipeline/reuse.py)."""
        wanted = list(ids)
        if not wanted or not self._exists():
            return {}
        found: dict[uuid.UUID, StoredVector] = {}
        for page in batches(wanted, ID_PAGE):
            found.update(self._vectors(page))
        return found

    def points_without_lexical(self) -> set[uuid.UUID]:
        """Ids of points that have a dense vector but no lexical side.

        Points written by docvec always have both (a chunk without terms has an empty lexical
        side); points written before the lexical index existed have none until re-vectorized,
        and in a collection without a lexical side that is every point. ``reconcile`` reports
        them (DESIGN §2, invariant 6).
        """
        if not self._exists():
            return set()
        if not self._has_lexical():
            return self._ids(Where())
        return self._ids(Where(without_lexical=True))

    # -- the store's own -------------------------------------------------------------------------

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

    # -- several collections (index versions) ----------------------------------------------------

    @abstractmethod
    def sibling(self, collection: str) -> VectorStore:
        """A store for another collection of the same store (an index version's), sharing this
        one's connection or client where the store has one (qdrant-client's local mode can open
        its folder only once per process). Closing the sibling releases only what it owns."""

    def drop_collection(self) -> None:
        """Delete the collection and every point in it (``docvec index drop``); a collection
        never created is a no-op."""
        if self._exists():
            self._drop_collection()
        self._dimension = None

    def point_alias(self, alias: str) -> bool:
        """Point ``alias`` at this collection in one atomic operation, where the store has
        aliases (a Qdrant server, and qdrant-client's local mode): other readers of the store
        switch with the activation. Returns False where the store has none (SQL is the source of
        truth either way: docvec's own queries name the collection)."""
        return False

    # -- primitives ------------------------------------------------------------------------------

    @abstractmethod
    def _create_collection(self, dimension: int) -> None:
        """Create the collection for ``dimension``-sized cosine vectors and its lexical side and
        indexes, or check the existing one (idempotent).

        Raises:
            DimensionMismatch: the collection exists with another size, or docvec did not make it.
        """

    @abstractmethod
    def _exists(self) -> bool:
        """Whether the collection exists (reads and deletes on a store never written are no-ops)."""

    @abstractmethod
    def _vectors(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, StoredVector]:
        """The dense vectors and text hashes of the existing points among ``ids`` (at most
        :data:`ID_PAGE`)."""

    @abstractmethod
    def _drop_collection(self) -> None:
        """Delete the existing collection with its points and indexes."""

    def _has_lexical(self) -> bool:
        """Whether the collection exists and has its lexical side (here: whenever it exists).

        A store whose collections made before the lexical index lack it answers for itself.
        """
        return self._exists()

    @abstractmethod
    def _upsert(self, points: Sequence[Point]) -> None:
        """Write ``points`` (at least one, vectors checked), each point whole: its dense vector and
        its lexical side together, so an overwrite leaves no stale terms."""

    @abstractmethod
    def _delete(self, where: Where) -> None:
        """Delete the points ``where`` selects (the collection exists)."""

    @abstractmethod
    def _delete_points(self, ids: Sequence[uuid.UUID]) -> None:
        """Delete points by id (1 to :data:`ID_PAGE` of them; the collection exists)."""

    @abstractmethod
    def _query_dense(
        self,
        project_id: uuid.UUID,
        vector: Sequence[float],
        *,
        limit: int,
        score_threshold: float | None,
    ) -> list[Hit]:
        """The ``limit`` (>= 1) points of ``project_id`` nearest to ``vector`` by cosine with a
        similarity of at least ``score_threshold``, best first; ``score`` is the similarity."""

    @abstractmethod
    def _query_lexical(
        self, project_id: uuid.UUID, query: LexicalVector, *, limit: int
    ) -> list[Hit]:
        """The ``limit`` (>= 1) points of ``project_id`` with the best BM25 score for ``query``
        (at least one term; the collection has its lexical side), best first, the IDF over the
        project's points only; ``score`` is the BM25 score."""

    def _query_both(
        self,
        project_id: uuid.UUID,
        vector: Sequence[float],
        query: LexicalVector | None,
        *,
        limit: int,
        score_threshold: float | None,
    ) -> tuple[list[Hit], list[Hit]]:
        """The dense and the lexical ranking, ``limit`` deep each, for a hybrid search (the
        collection exists); ``query`` None: no lexical ranking. A store may batch the two."""
        dense = self._query_dense(project_id, vector, limit=limit, score_threshold=score_threshold)
        if query is None:
            return dense, []
        return dense, self._query_lexical(project_id, query, limit=limit)

    @abstractmethod
    def _count(self, where: Where) -> int:
        """Exact number of the points ``where`` selects (the collection exists)."""

    @abstractmethod
    def _ids(self, where: Where) -> set[uuid.UUID]:
        """Ids of the points ``where`` selects (the collection exists)."""
