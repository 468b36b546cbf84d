"""Qdrant Edge store: Qdrant's Rust engine inside the process, one folder per collection.

Qdrant Edge (PyPI ``qdrant-edge-py``, module ``qdrant_edge``; labelled beta, so pinned exactly)
runs the segments, indexes and write-ahead log of a Qdrant shard in-process, without a server.
It has no collections: a shard is a folder, so the collection ``C`` lives in ``{path}/C``. The
shard holds what a ``QdrantStore`` collection holds: the dense vector (unnamed, cosine, size fixed
at creation), the sparse vector ``bm25`` with the IDF modifier, and the payload ``project_id``,
``document_id`` (UUID strings), ``chunk_index`` (int) and ``file_name``, with keyword indexes on
the two ids and an integer index on ``chunk_index`` so that filtered searches and deletes read
the indexes. Every query carries a ``project_id`` filter (DESIGN §2, invariant 5).

BM25 is computed as in the other stores (:mod:`app.lexical`): the chunk's weights are written with
its point, and the query half comes from the IDF modifier with the statistics restricted to the
searched project's points (``SearchParams(idf=IdfParams(corpus=project filter))``), so the scores
equal ``QdrantStore``'s and ``PgVectorStore``'s. Measured on qdrant-edge-py 0.9.0: ``N`` counts
the project's live points that have a ``bm25`` vector (an empty one counts, as pgvector counts an
empty ``lexical``), and deleted or overwritten points leave the statistics at once.

Three properties of the engine shape this class:

- **One process per folder.** Opening a shard locks its write-ahead log (``flock``, so a second
  open in the same process is refused too, and the lock dies with its process). The second open
  raises :class:`~app.errors.VectorStoreLocked`. The WAL stays on: it is what makes an upsert
  survive a killed process (it is replayed at the next open).
- **Searchable at once, indexed on demand.** Written points are searchable immediately, by an
  exact scan of the unindexed segment. The HNSW index is built only by :meth:`EdgeStore.optimize`,
  which blocks and holds the GIL for its whole run (bench/search.py on 2 cores: 80-150 s at 100k
  384-dim points), so it is called after an ingest (the CLI does), never inside a request.
- **Plain exceptions.** The engine raises ``Exception`` with a message; a wrong vector size
  ("Vector dimension error: expected dim: N, got M", Qdrant's wording) becomes
  :class:`~app.errors.DimensionMismatch`, a held WAL becomes ``VectorStoreLocked``, anything else
  propagates unchanged (there is no network, so nothing here is a transient outage).
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from app.errors import DimensionMismatch, DocvecError, VectorStoreLocked
from app.lexical import query_vector
from app.vectorstore.base import (
    Hit,
    Point,
    VectorStore,
    check_dimensions,
    dimension_mismatch,
    ranked,
)
from app.vectorstore.payload import (
    INTEGER_INDEXES,
    KEYWORD_INDEXES,
    LEXICAL_VECTOR,
    hit_from,
    point_payload,
)

#: Points per update operation. The engine has no request limit; 256 bounds the Python objects
#: built per call. Measured on 10k 384-dim points (2 cores): 256, 1024 and 2000 per operation
#: all write ~7,100 points/s, 64 ~6,500.
UPSERT_BATCH = 256
#: Ids per scroll page, and document ids per ``MatchAny`` filter in :meth:`EdgeStore.point_ids`.
SCROLL_PAGE = 1000
#: The file ``EdgeShard.create`` writes into a shard's folder with the shard's vector config;
#: its presence marks a folder that holds a shard.
CONFIG_FILE = "edge_config.json"
#: Qdrant's HNSW defaults (``m``, ``ef_construct``; Qdrant's config/config.yaml), needed only when
#: a caller lowers the full-scan threshold, because ``HnswIndexConfig`` wants all three.
HNSW_M = 16
HNSW_EF_CONSTRUCT = 100

#: Qdrant's own wording of a wrong vector size (the same as the server's and local mode's).
_DIM_ERROR = re.compile(r"Vector dimension error: expected dim: (\d+), got (\d+)")
#: The engine's wording when another open file description holds the shard's WAL lock.
_LOCKED = re.compile(r"failed to open WAL|WouldBlock")
#: ``EdgeShard.create``'s refusal of a folder that already holds a shard.
_EXISTS_MARKER = "already contains segment data"
#: A collection name is a folder name here: no separators, no dot-only names.
_COLLECTION_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}")


class EdgeStore(VectorStore):
    """Points in one Qdrant Edge shard, the folder ``{path}/{collection}``.

    The shard is opened here when the folder holds one, else created by :meth:`ensure_collection`
    (reads before that find nothing). Calls may come from several threads: the engine is
    thread-safe and releases the GIL while it searches; opening and closing are serialised.

    Args:
        collection: collection name (``DOCVEC_COLLECTION``), used as the shard's folder name:
            letters, digits, ``_``, ``.`` and ``-``, not starting with ``.`` or ``-``.
        path: folder holding one shard folder per collection (``{data_dir}/edge``); created if
            missing.
        indexing_threshold_kb: vectors (KB) an unindexed segment holds before :meth:`optimize`
            builds its HNSW index; None = the engine's default (Qdrant's config.yaml:
            ``indexing_threshold_kb: 10000``, with 1 KB = 256 floats: ~6,700 384-dim vectors).
            Fixed when the shard is created.
        full_scan_threshold_kb: vectors (KB) matching a filter below which a search scans them
            exactly instead of walking the HNSW graph; None = the engine's default (Qdrant's
            ``full_scan_threshold_kb: 10000``). Fixed when the shard is created. Tests lower
            both to put a few hundred points in an HNSW graph.

    Raises:
        VectorStoreLocked: another process, or another store in this one, holds the shard.
        ValueError: ``collection`` is not a plain folder name.
    """

    name = "qdrant-edge"

    def __init__(
        self,
        *,
        collection: str,
        path: Path,
        indexing_threshold_kb: int | None = None,
        full_scan_threshold_kb: int | None = None,
    ) -> None:
        if not _COLLECTION_NAME.fullmatch(collection):
            raise ValueError(
                f"Qdrant Edge collection name {collection!r} must be a plain folder name: "
                "letters, digits, '_', '.' and '-', not starting with '.' or '-'"
            )
        self.collection = collection
        self.folder = Path(path) / collection
        self._indexing_threshold_kb = indexing_threshold_kb
        self._full_scan_threshold_kb = full_scan_threshold_kb
        self._shard: qe.EdgeShard | None = None
        self._closed = False
        self._dimension: int | None = None
        #: Serialises opening, creating and closing the shard (not the reads and writes).
        self._open_lock = threading.Lock()
        if self._holds_shard():
            with self._open_lock:
                self._shard = self._load()

    # -- collection ------------------------------------------------------------------------------

    def ensure_collection(self, dimension: int) -> None:
        """Create the shard for ``dimension``-sized cosine vectors, its ``bm25`` sparse vector
        (IDF modifier) and its payload indexes, or check the existing shard (idempotent).

        Raises:
            DimensionMismatch: the shard holds vectors of another size, or was not made by
                docvec (named vectors, no ``bm25`` vector with the IDF modifier).
            VectorStoreLocked: another process created the shard meanwhile and holds it.
        """
        with self._open_lock:
            self._check_open()
            if self._shard is None:
                self._shard = self._load() if self._holds_shard() else self._create(dimension)
            shard = self._shard
        existing = self._stored_dimension()
        if existing != dimension:
            raise dimension_mismatch(self.collection, existing, dimension)
        indexed = set(shard.info().payload_schema)
        with self._call("create the payload indexes"):
            for field in KEYWORD_INDEXES:
                if field not in indexed:
                    shard.update(
                        qe.UpdateOperation.create_field_index(field, qe.PayloadSchemaType.Keyword)
                    )
            for field in INTEGER_INDEXES:
                if field not in indexed:
                    shard.update(
                        qe.UpdateOperation.create_field_index(field, qe.PayloadSchemaType.Integer)
                    )
        self._dimension = dimension

    def _holds_shard(self) -> bool:
        return (self.folder / CONFIG_FILE).is_file()

    def _create(self, dimension: int) -> qe.EdgeShard:
        """A new shard in ``self.folder``, or the one another store created there meanwhile."""
        optimizers = hnsw = None
        if self._indexing_threshold_kb is not None:
            optimizers = qe.EdgeOptimizersConfig(indexing_threshold=self._indexing_threshold_kb)
        if self._full_scan_threshold_kb is not None:
            hnsw = qe.HnswIndexConfig(
                m=HNSW_M,
                ef_construct=HNSW_EF_CONSTRUCT,
                full_scan_threshold=self._full_scan_threshold_kb,
            )
        config = qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dimension, distance=qe.Distance.Cosine),
            sparse_vectors={LEXICAL_VECTOR: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
            optimizers=optimizers,
            hnsw_config=hnsw,
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            return qe.EdgeShard.create(str(self.folder), config)
        except Exception as exc:
            if _LOCKED.search(str(exc)):
                raise self._locked() from None
            if _EXISTS_MARKER not in str(exc):
                raise
        return self._load()  # another store created it between our look and our create

    def _load(self) -> qe.EdgeShard:
        """Open the shard in ``self.folder``; a held WAL lock becomes :class:`VectorStoreLocked`."""
        try:
            return qe.EdgeShard.load(str(self.folder))
        except Exception as exc:
            if _LOCKED.search(str(exc)):
                raise self._locked() from None  # the engine's message says nothing more
            raise

    def _locked(self) -> VectorStoreLocked:
        return VectorStoreLocked(
            f"the Qdrant Edge folder {self.folder} is already opened by another process or store "
            "(Qdrant Edge locks its folder to one); set DOCVEC_QDRANT_URL to a Qdrant server, or "
            "DOCVEC_VECTOR_STORE=pgvector with DOCVEC_PGVECTOR_URL, so that several processes "
            "can share the store"
        )

    def _stored_dimension(self) -> int:
        """The shard's dense vector size, from the config ``EdgeShard.create`` wrote.

        Raises:
            DimensionMismatch: the config does not describe a shard docvec made.
        """
        try:
            config = json.loads((self.folder / CONFIG_FILE).read_text(encoding="utf-8"))
            dense = config["vectors"][""]
            sparse = config.get("sparse_vectors", {}).get(LEXICAL_VECTOR)
            size = int(dense["size"])
            made_by_docvec = (
                dense.get("distance") == "Cosine"
                and sparse is not None
                and sparse.get("modifier") == "idf"
            )
        except (OSError, ValueError, KeyError, TypeError):
            made_by_docvec, size = False, 0
        if not made_by_docvec:
            raise DimensionMismatch(
                f"the Qdrant Edge folder {self.folder} holds a shard docvec did not create (it "
                f"needs one unnamed cosine vector and the sparse vector '{LEXICAL_VECTOR}' with "
                "the IDF modifier); set DOCVEC_COLLECTION to another name"
            )
        return size

    # -- writes ----------------------------------------------------------------------------------

    def upsert(self, points: Sequence[Point]) -> None:
        """Insert or overwrite ``points`` by id, ``UPSERT_BATCH`` per update operation.

        Each point is written whole, its dense vector and its ``bm25`` vector together, so an
        overwrite replaces both. A returned call is in the WAL: it survives a killed process.

        Raises:
            DimensionMismatch: a vector's length differs from the shard's size.
            RuntimeError: no shard yet (``ensure_collection`` was never called on this folder).
        """
        check_dimensions(self.collection, self._dimension, (p.vector for p in points))
        if not points:
            return
        shard = self._require_shard()
        with self._call("upsert points"):
            for start in range(0, len(points), UPSERT_BATCH):
                batch = points[start : start + UPSERT_BATCH]
                shard.update(qe.UpdateOperation.upsert_points([_point(p) for p in batch]))

    def delete_document(self, document_id: uuid.UUID, *, from_chunk_index: int = 0) -> None:
        """Delete the document's points with ``chunk_index >= from_chunk_index``."""
        shard = self._shard_or_none()
        if shard is None:
            return
        selector = qe.Filter(
            must=[
                _match("document_id", document_id),
                qe.FieldCondition(key="chunk_index", range=qe.RangeFloat(gte=from_chunk_index)),
            ]
        )
        with self._call("delete a document's points"):
            shard.update(qe.UpdateOperation.delete_points_by_filter(selector))

    def delete_points(self, ids: Iterable[uuid.UUID]) -> None:
        """Delete points by id, ``SCROLL_PAGE`` per operation; unknown ids are ignored."""
        wanted: list[qe.PointId] = [str(i) for i in ids]
        shard = self._shard_or_none() if wanted else None
        if shard is None:
            return
        with self._call("delete points"):
            for start in range(0, len(wanted), SCROLL_PAGE):
                shard.update(qe.UpdateOperation.delete_points(wanted[start : start + SCROLL_PAGE]))

    def delete_project(self, project_id: uuid.UUID) -> None:
        """Delete every point of the project."""
        shard = self._shard_or_none()
        if shard is None:
            return
        with self._call("delete a project's points"):
            shard.update(qe.UpdateOperation.delete_points_by_filter(_project(project_id)))

    def optimize(self) -> None:
        """Build the HNSW index of the segments that reached the indexing threshold, merge
        small segments and drop deleted points; blocks until the engine has nothing left to do.

        Holds the GIL for its whole run (every other thread of the process waits): 80-150 s for
        100k 384-dim points on 2 cores, measured with bench/search.py. Call it after an ingest,
        never while serving requests. Points and search results stay the same; filtered
        searches over more than the full-scan threshold get faster (at 100k points, from a scan
        of the project's points to a p95 of a few milliseconds).
        """
        shard = self._shard_or_none()
        if shard is None:
            return
        with self._call("optimize"):
            shard.optimize()

    # -- reads -----------------------------------------------------------------------------------

    def search(
        self,
        project_id: uuid.UUID,
        vector: Sequence[float],
        *,
        top_k: int,
        score_threshold: float | None = None,
    ) -> list[Hit]:
        """The ``top_k`` points of ``project_id`` nearest to ``vector`` by cosine, best first.

        The project filter is applied by the engine inside the vector search (through the
        ``project_id`` index), never afterwards. Exact before :meth:`optimize` builds an index.

        Raises:
            DimensionMismatch: ``vector`` has another length than the shard's size.
        """
        check_dimensions(self.collection, self._dimension, [vector])
        shard = self._shard_or_none()
        if top_k <= 0 or shard is None:
            return []
        with self._call("search"):
            found = shard.query(_dense_request(project_id, vector, top_k, score_threshold))
        return ranked([_hit(p) for p in found], "dense")

    def search_lexical(self, project_id: uuid.UUID, text: str, *, top_k: int) -> list[Hit]:
        """The ``top_k`` points of ``project_id`` with the best BM25 score for ``text``.

        The IDF is computed by the engine over the project's live points only (a corpus
        filter), so other projects and deleted points never change the ranking.
        """
        request = _lexical_request(project_id, text, top_k)
        shard = self._shard_or_none() if request is not None else None
        if request is None or shard is None:
            return []
        with self._call("search"):
            found = shard.query(request)
        return ranked([_hit(p) for p in found], "lexical")

    def _hybrid_candidates(
        self,
        project_id: uuid.UUID,
        vector: Sequence[float],
        text: str,
        *,
        depth: int,
        score_threshold: float | None,
    ) -> tuple[list[Hit], list[Hit]]:
        """Both rankings as one planned batch (``query_batch``), fused by the base class."""
        check_dimensions(self.collection, self._dimension, [vector])
        shard = self._shard_or_none()
        if shard is None:
            return [], []
        requests = [_dense_request(project_id, vector, depth, score_threshold)]
        lexical = _lexical_request(project_id, text, depth)
        if lexical is not None:
            requests.append(lexical)
        with self._call("search"):
            results = shard.query_batch(qe.QueryBatchRequest(requests))
        dense = ranked([_hit(p) for p in results[0]], "dense")
        if lexical is None:
            return dense, []
        return dense, ranked([_hit(p) for p in results[1]], "lexical")

    def count(
        self, *, project_id: uuid.UUID | None = None, document_id: uuid.UUID | None = None
    ) -> int:
        """Exact number of points, optionally of one project and/or one document."""
        shard = self._shard_or_none()
        if shard is None:
            return 0
        conditions: list[Any] = []
        if project_id is not None:
            conditions.append(_match("project_id", project_id))
        if document_id is not None:
            conditions.append(_match("document_id", document_id))
        with self._call("count points"):
            return int(
                shard.count(
                    qe.CountRequest(
                        exact=True, filter=qe.Filter(must=conditions) if conditions else None
                    )
                )
            )

    def point_ids(self, *, document_ids: Iterable[uuid.UUID] | None = None) -> set[uuid.UUID]:
        """Ids of all points, or of the given documents' points (an empty iterable gives none)."""
        shard = self._shard_or_none()
        if shard is None:
            return set()
        if document_ids is None:
            return self._scroll_ids(shard, None)
        wanted = [str(d) for d in document_ids]
        ids: set[uuid.UUID] = set()
        for start in range(0, len(wanted), SCROLL_PAGE):
            chunk = wanted[start : start + SCROLL_PAGE]
            ids |= self._scroll_ids(
                shard,
                qe.Filter(must=[qe.FieldCondition(key="document_id", match=qe.MatchAny(chunk))]),
            )
        return ids

    def points_without_lexical(self) -> set[uuid.UUID]:
        """Ids of points without the ``bm25`` vector.

        docvec writes ``bm25`` with every point (empty for a chunk without terms), so this finds
        only points another writer put in the shard.
        """
        shard = self._shard_or_none()
        if shard is None:
            return set()
        return self._scroll_ids(shard, qe.Filter(must_not=[qe.HasVectorCondition(LEXICAL_VECTOR)]))

    def ping(self) -> None:
        """Read the shard's info (nothing to reach before the shard exists).

        Raises:
            RuntimeError: the store was closed.
        """
        shard = self._shard_or_none()
        if shard is not None:
            with self._call("read the shard's info"):
                shard.info()

    def close(self) -> None:
        """Flush the segments and release the folder's lock (idempotent)."""
        with self._open_lock:
            self._closed = True
            shard, self._shard = self._shard, None
        if shard is not None:
            shard.close()

    # -- internals -------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the Qdrant Edge store on {self.folder} is closed")

    def _shard_or_none(self) -> qe.EdgeShard | None:
        """The open shard; opened now if another store created it since; None if none exists."""
        shard = self._shard
        if shard is not None:
            return shard
        with self._open_lock:
            self._check_open()
            if self._shard is None and self._holds_shard():
                self._shard = self._load()
            return self._shard

    def _require_shard(self) -> qe.EdgeShard:
        shard = self._shard_or_none()
        if shard is None:
            raise RuntimeError(
                f"no Qdrant Edge shard in {self.folder} yet; call ensure_collection first"
            )
        return shard

    def _scroll_ids(self, shard: qe.EdgeShard, where: qe.Filter | None) -> set[uuid.UUID]:
        ids: set[uuid.UUID] = set()
        offset: qe.PointId | None = None
        with self._call("list point ids"):
            while True:
                records, offset = shard.scroll(
                    qe.ScrollRequest(
                        offset=offset,
                        limit=SCROLL_PAGE,
                        filter=where,
                        with_payload=False,
                        with_vector=False,
                    )
                )
                ids.update(uuid.UUID(str(r.id)) for r in records)
                if offset is None:
                    return ids

    @contextlib.contextmanager
    def _call(self, action: str) -> Iterator[None]:
        """Turn the engine's wrong-vector-size error into :class:`DimensionMismatch`.

        The engine raises plain ``Exception``; every other one propagates unchanged.
        """
        try:
            yield
        except DocvecError:
            raise
        except Exception as exc:
            found = _DIM_ERROR.search(str(exc))
            if found:
                existing, wanted = int(found.group(1)), int(found.group(2))
                raise dimension_mismatch(self.collection, existing, wanted) from exc
            raise


def _point(point: Point) -> qe.Point:
    """The engine's point: unnamed dense vector, ``bm25`` sparse vector (empty if no terms)."""
    indices, values = point.lexical().sparse()
    vectors: dict[str, Any] = {
        "": list(point.vector),
        LEXICAL_VECTOR: qe.SparseVector(indices=indices, values=values),
    }
    return qe.Point(id=str(point.id), vector=vectors, payload=point_payload(point))


def _project(project_id: uuid.UUID) -> qe.Filter:
    return qe.Filter(must=[_match("project_id", project_id)])


def _dense_request(
    project_id: uuid.UUID, vector: Sequence[float], limit: int, score_threshold: float | None
) -> qe.QueryRequest:
    return qe.QueryRequest(
        limit=limit,
        query=qe.Query.Nearest([float(x) for x in vector]),
        filter=_project(project_id),
        score_threshold=score_threshold,
        with_payload=True,
        with_vector=False,
    )


def _lexical_request(project_id: uuid.UUID, text: str, limit: int) -> qe.QueryRequest | None:
    """A BM25 query, or None when ``text`` has no terms or ``limit`` is 0."""
    indices, values = query_vector(text).sparse()
    if not indices or limit <= 0:
        return None
    project = _project(project_id)
    terms = qe.SparseVector(indices=indices, values=values)
    return qe.QueryRequest(
        limit=limit,
        query=qe.Query.Nearest(terms, using=LEXICAL_VECTOR),
        filter=project,
        # IDF over the project's own points: other projects neither leak into nor skew it.
        params=qe.SearchParams(idf=qe.IdfParams(corpus=project)),
        with_payload=True,
        with_vector=False,
    )


def _match(key: str, value: uuid.UUID) -> qe.FieldCondition:
    return qe.FieldCondition(key=key, match=qe.MatchValue(str(value)))


def _hit(point: qe.ScoredPoint) -> Hit:
    return hit_from(point.id, point.score, point.payload)


__all__ = ["EdgeStore"]
