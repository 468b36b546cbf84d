"""Qdrant Edge store: Qdrant's Rust engine inside the process, one folder per collection.

Qdrant Edge (PyPI ``qdrant-edge-py``, module ``qdrant_edge``; labelled beta, so pinned exactly)
runs the segments, indexes and write-ahead log of a Qdrant shard in-process, without a server.
It has no collections: a shard is a folder, so the collection ``C`` lives in ``{path}/C``. The
shard holds what a ``QdrantStore`` collection holds (:mod:`app.vectorstore.payload`), with keyword
indexes on the two ids and an integer index on ``chunk_index`` so that filtered searches and
deletes read the indexes; what both engines do alike is :mod:`app.vectorstore.qdrant_family`.
Every query carries a ``project_id`` filter (DESIGN §2, invariant 5).

BM25 is computed as in the other stores (:mod:`app.lexical`): the chunk's weights are written with
its point, and the query half comes from the IDF modifier with the statistics restricted to the
searched project's points, so the scores equal ``QdrantStore``'s and ``PgVectorStore``'s. ``N``
counts the project's live points that have a ``bm25`` vector (an empty one counts, as pgvector
counts an empty ``lexical``), and deleted or overwritten points leave the statistics at once (so
qdrant-edge-py 0.9.0 behaves; the congruence tests hold it to that).

Three properties of the engine shape this class:

- **One process per folder.** Opening a shard locks its write-ahead log (``flock``, so a second
  open in the same process is refused too, and the lock dies with its process). The second open
  raises :class:`~app.errors.VectorStoreLocked`. The WAL stays on: it is what makes an upsert
  survive a killed process (it is replayed at the next open).
- **Searchable at once, indexed on demand.** Written points are searchable immediately, by an
  exact scan of the unindexed segment. The HNSW index is built only by :meth:`EdgeStore.optimize`,
  which blocks and holds the GIL for its whole run (minutes at 100k points: README, Performance),
  so it is called after an ingest (the CLI does), never inside a request.
- **Plain exceptions.** The engine raises ``Exception`` with a message; a wrong vector size
  (Qdrant's wording) becomes :class:`~app.errors.DimensionMismatch`, a held WAL becomes
  ``VectorStoreLocked``, anything else propagates unchanged (there is no network, so nothing here
  is a transient outage).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import qdrant_edge as qe
from typing_extensions import override

from app.errors import DimensionMismatch, DocvecError, VectorStoreLocked
from app.vectorstore.base import Point, StoredVector, Where, as_floats, dimension_mismatch
from app.vectorstore.payload import (
    INTEGER_INDEXES,
    KEYWORD_INDEXES,
    LEXICAL_VECTOR,
    point_payload,
    point_vectors,
    stored_vector,
)
from app.vectorstore.qdrant_family import SCROLL_PAGE, PointId, QdrantFamilyStore

#: The file ``EdgeShard.create`` writes into a shard's folder with the shard's vector config;
#: its presence marks a folder that holds a shard.
CONFIG_FILE = "edge_config.json"
#: Qdrant's HNSW defaults (``m``, ``ef_construct``; Qdrant's config/config.yaml), needed only when
#: a caller lowers the full-scan threshold, because ``HnswIndexConfig`` wants all three.
HNSW_M = 16
HNSW_EF_CONSTRUCT = 100

#: The engine's wording when another open file description holds the shard's WAL lock.
_LOCKED = re.compile(r"failed to open WAL|WouldBlock")
#: ``EdgeShard.create``'s refusal of a folder that already holds a shard.
_EXISTS_MARKER = "already contains segment data"
#: A collection name is a folder name here: no separators, no dot-only names.
_COLLECTION_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}")


class EdgeStore(QdrantFamilyStore[qe.Filter, qe.QueryRequest]):
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
        super().__init__(collection=collection)
        self.folder = Path(path) / collection
        self._indexing_threshold_kb = indexing_threshold_kb
        self._full_scan_threshold_kb = full_scan_threshold_kb
        self._shard: qe.EdgeShard | None = None
        self._closed = False
        #: Serialises opening, creating and closing the shard (not the reads and writes).
        self._open_lock = threading.Lock()
        if self._holds_shard():
            with self._open_lock:
                self._shard = self._load()

    # -- collection ------------------------------------------------------------------------------

    @override
    def _create_collection(self, dimension: int) -> None:
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
                self._shard = self._load() if self._holds_shard() else self._create_shard(dimension)
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

    @override
    def _exists(self) -> bool:
        """Whether a shard exists (opened now if another store created it since)."""
        return self._shard_or_none() is not None

    @override
    def _vectors(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, StoredVector]:
        wanted: list[qe.PointId] = [str(i) for i in ids]
        with self._call("read vectors"):
            records = self._require_shard().retrieve(wanted, True, True)
        out: dict[uuid.UUID, StoredVector] = {}
        for r in records:
            found = stored_vector(r.vector, r.payload)
            if found is not None:
                out[uuid.UUID(str(r.id))] = found
        return out

    @override
    def _drop_collection(self) -> None:
        """Close the shard and delete its folder."""
        with self._open_lock:
            shard, self._shard = self._shard, None
        if shard is not None:
            shard.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    @override
    def sibling(self, collection: str) -> EdgeStore:
        """The shard folder ``{path}/{collection}`` beside this one (its own lock and files)."""
        return EdgeStore(
            collection=collection,
            path=self.folder.parent,
            indexing_threshold_kb=self._indexing_threshold_kb,
            full_scan_threshold_kb=self._full_scan_threshold_kb,
        )

    def _holds_shard(self) -> bool:
        return (self.folder / CONFIG_FILE).is_file()

    def _create_shard(self, dimension: int) -> qe.EdgeShard:
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

    # -- the engine's calls ----------------------------------------------------------------------

    @override
    def _write(self, points: Sequence[Point]) -> None:
        """One update operation; a returned call is in the WAL, so it survives a killed process.

        Raises:
            RuntimeError: no shard yet (``ensure_collection`` was never called on this folder).
        """
        self._require_shard().update(qe.UpdateOperation.upsert_points([_point(p) for p in points]))

    @override
    def _delete(self, where: Where) -> None:
        operation = qe.UpdateOperation.delete_points_by_filter(self._filter(where))
        with self._call("delete points"):
            self._require_shard().update(operation)

    @override
    def _delete_points(self, ids: Sequence[uuid.UUID]) -> None:
        wanted: list[qe.PointId] = [str(i) for i in ids]
        with self._call("delete points"):
            self._require_shard().update(qe.UpdateOperation.delete_points(wanted))

    @override
    def _run(self, requests: Sequence[qe.QueryRequest]) -> list[list[qe.ScoredPoint]]:
        """One request by ``query``, several as one planned batch (``query_batch``). The project
        filter is applied by the engine inside the vector search (through the ``project_id``
        index), never afterwards; exact before :meth:`optimize` builds an index."""
        shard = self._require_shard()
        if len(requests) == 1:
            return [shard.query(requests[0])]
        return shard.query_batch(qe.QueryBatchRequest(list(requests)))

    @override
    def _count(self, where: Where) -> int:
        request = qe.CountRequest(exact=True, filter=self._selection(where))
        with self._call("count points"):
            return int(self._require_shard().count(request))

    @override
    def _scroll(
        self, selection: qe.Filter | None, offset: PointId | None
    ) -> tuple[list[qe.Record], PointId | None]:
        return self._require_shard().scroll(
            qe.ScrollRequest(
                offset=offset,
                limit=SCROLL_PAGE,
                filter=selection,
                with_payload=False,
                with_vector=False,
            )
        )

    @override
    def optimize(self) -> None:
        """Build the HNSW index of the segments that reached the indexing threshold, merge
        small segments and drop deleted points; blocks until the engine has nothing left to do.

        Holds the GIL for its whole run (every other thread of the process waits), for minutes at
        100k points (README, Performance). Call it after an ingest, never while serving requests.
        Points and search results stay the same; filtered searches over more than the full-scan
        threshold get faster (an HNSW walk instead of a scan of the project's points).
        """
        shard = self._shard_or_none()
        if shard is None:
            return
        with self._call("optimize"):
            shard.optimize()

    @override
    def ping(self) -> None:
        """Read the shard's info (nothing to reach before the shard exists).

        Raises:
            RuntimeError: the store was closed.
        """
        shard = self._shard_or_none()
        if shard is not None:
            with self._call("read the shard's info"):
                shard.info()

    @override
    def close(self) -> None:
        """Flush the segments and release the folder's lock (idempotent)."""
        with self._open_lock:
            self._closed = True
            shard, self._shard = self._shard, None
        if shard is not None:
            shard.close()

    # -- the library's spelling ------------------------------------------------------------------

    @override
    def _filter(self, where: Where) -> qe.Filter:
        must: list[qe.ConditionType] = [
            qe.FieldCondition(key=key, match=qe.MatchValue(str(value)))
            for key, value in where.equals()
        ]
        if where.document_ids is not None:
            any_of = qe.MatchAny([str(d) for d in where.document_ids])
            must.append(qe.FieldCondition(key="document_id", match=any_of))
        if where.from_chunk_index is not None:
            at_least = qe.RangeFloat(gte=where.from_chunk_index)
            must.append(qe.FieldCondition(key="chunk_index", range=at_least))
        lacking: list[qe.ConditionType] | None = None
        if where.without_lexical:
            lacking = [qe.HasVectorCondition(LEXICAL_VECTOR)]
        return qe.Filter(must=must or None, must_not=lacking)

    @override
    def _dense_request(
        self,
        project: qe.Filter,
        vector: Sequence[float],
        limit: int,
        score_threshold: float | None,
    ) -> qe.QueryRequest:
        return qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(as_floats(vector)),
            filter=project,
            score_threshold=score_threshold,
            with_payload=True,
            with_vector=False,
        )

    @override
    def _lexical_request(
        self, project: qe.Filter, indices: list[int], values: list[float], limit: int
    ) -> qe.QueryRequest:
        terms = qe.SparseVector(indices=indices, values=values)
        return qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(terms, using=LEXICAL_VECTOR),
            filter=project,
            params=qe.SearchParams(idf=qe.IdfParams(corpus=project)),
            with_payload=True,
            with_vector=False,
        )

    @override
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
            mismatch = self._dimension_error(str(exc))
            if mismatch is not None:
                raise mismatch from exc
            raise

    # -- the shard -------------------------------------------------------------------------------

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


def _point(point: Point) -> qe.Point:
    """The engine's point: unnamed dense vector, ``bm25`` sparse vector (empty if no terms)."""
    return qe.Point(
        id=str(point.id), vector=point_vectors(point, qe.SparseVector), payload=point_payload(point)
    )


__all__ = ["EdgeStore"]
