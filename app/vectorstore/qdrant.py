"""Qdrant store: a Qdrant server (``url``) or Qdrant's embedded local mode (``path``).

One collection holds every project's points: cosine distance, vector size fixed at creation, payload
``project_id``, ``document_id`` (UUID strings), ``chunk_index`` (int) and ``file_name``. Every query
carries a server-side ``project_id`` filter (DESIGN §2, invariant 5).

Each point has two vectors, written by one upsert: the dense one (unnamed, as before the lexical
index existed) and the sparse vector ``bm25`` of its chunk's BM25 term weights (indices are
:func:`app.lexical.term_id`). Qdrant's IDF modifier supplies the query half of BM25, with IDF
statistics restricted to the searched project (``SearchParams.idf`` with a corpus filter), the
same numbers in local mode and on a server. A collection made before the lexical index gets the
``bm25`` vector added at start-up; its older points have none until ``docvec reconcile --fix``
re-vectorizes them.

Local mode keeps its points in a folder that one process at a time may open (a file lock); a second
process gets :class:`~app.errors.VectorStoreLocked` telling it to use a server or pgvector.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import grpc
import httpx
import pydantic
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse
from qdrant_client.local.qdrant_local import QdrantLocal

from app.errors import DimensionMismatch, VectorStoreLocked, VectorStoreUnavailable
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

#: Points per upsert request. Qdrant's default request limit is 32 MiB; 256 points of 3072
#: float dims as JSON stay far below it, and the batch is large enough to amortise round trips.
UPSERT_BATCH = 256
#: Ids per scroll page and document ids per ``MatchAny`` filter in :meth:`QdrantStore.point_ids`.
SCROLL_PAGE = 1000

_LOCKED_MARKER = "already accessed by another instance"
#: gRPC status codes that mean "try again later" rather than "this request is wrong".
_TRANSIENT_GRPC = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
}
#: Qdrant's own wording of a wrong vector size, both from the server (HTTP 400) and local mode.
_DIM_ERROR = re.compile(r"Vector dimension error: expected dim: (\d+), got (\d+)")


class QdrantStore(VectorStore):
    """Points in one Qdrant collection.

    Args:
        collection: collection name (``DOCVEC_COLLECTION``).
        url: Qdrant server URL; when set, server mode is used and ``path`` is ignored.
        api_key: server API key, if the server wants one. Never logged nor put in messages.
        path: folder of local mode, used when ``url`` is None (created if missing).
        timeout_s: seconds per server request (rounded up to whole seconds, as the client wants).

    Raises:
        VectorStoreLocked: local mode and another process holds ``path``.
        ValueError: neither ``url`` nor ``path`` given.
    """

    name = "qdrant"

    def __init__(
        self,
        *,
        collection: str,
        url: str | None = None,
        api_key: str | None = None,
        path: Path | None = None,
        timeout_s: float = 30,
    ) -> None:
        self.collection = collection
        self._dimension: int | None = None
        #: Whether the collection has the sparse vector ``bm25`` (None: not looked up yet).
        self._lexical: bool | None = None
        if url:
            self._where = f"Qdrant at {_without_credentials(url)}"
            self.local = False
            # The compatibility check runs in a background thread and can only warn; it is skipped
            # so that an unreachable server surfaces as VectorStoreUnavailable from the first call.
            self._client = QdrantClient(
                url=url,
                api_key=api_key,
                timeout=math.ceil(timeout_s),
                check_compatibility=False,
            )
            # The remote client is thread-safe (httpx connection pool).
            self._guard: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        elif path is not None:
            self._where = f"Qdrant local folder {path}"
            self.local = True
            self._client = _open_local(path)
            # Local mode's in-memory index is plain dicts and numpy arrays: one call at a time.
            self._guard = threading.RLock()
        else:
            raise ValueError("QdrantStore needs a server url or a local path")

    # -- collection ------------------------------------------------------------------------------

    def ensure_collection(self, dimension: int) -> None:
        """Create the collection for ``dimension``-sized cosine vectors, its ``bm25`` sparse
        vector and its payload indexes.

        Idempotent, and safe when several workers start at once against one server (a 409 from a
        concurrent creation is taken as success). Payload indexes are created in server mode only:
        local mode filters by scanning and ignores them. A collection without the ``bm25`` vector
        (made before the lexical index) gets it; its points lack it until re-vectorized.

        Raises:
            DimensionMismatch: the collection exists with another vector size, or has a ``bm25``
                vector that docvec did not make (no IDF modifier).
            VectorStoreUnavailable: the server cannot be reached.
        """
        with self._call("create the collection"):
            if not self._client.collection_exists(self.collection):
                try:
                    self._client.create_collection(
                        self.collection,
                        vectors_config=qm.VectorParams(size=dimension, distance=qm.Distance.COSINE),
                        sparse_vectors_config={
                            LEXICAL_VECTOR: qm.SparseVectorParams(modifier=qm.Modifier.IDF)
                        },
                    )
                except UnexpectedResponse as exc:
                    if exc.status_code != 409:  # 409: another worker created it meanwhile
                        raise
            params = self._client.get_collection(self.collection).config.params
            existing = params.vectors
            if not isinstance(existing, qm.VectorParams):
                raise DimensionMismatch(
                    f"the collection '{self.collection}' uses named vectors, so docvec did not "
                    "create it; set DOCVEC_COLLECTION to another name"
                )
            if existing.size != dimension:
                raise dimension_mismatch(self.collection, existing.size, dimension)
            sparse = (params.sparse_vectors or {}).get(LEXICAL_VECTOR)
            if sparse is None:
                self._add_lexical_vector()
            elif sparse.modifier != qm.Modifier.IDF:
                raise DimensionMismatch(
                    f"the collection '{self.collection}' has a sparse vector '{LEXICAL_VECTOR}' "
                    "without the IDF modifier, so docvec did not create it; set "
                    "DOCVEC_COLLECTION to another name and re-vectorize the projects"
                )
            if not self.local:
                for field in KEYWORD_INDEXES:
                    self._client.create_payload_index(
                        self.collection, field, field_schema=qm.PayloadSchemaType.KEYWORD
                    )
                for field in INTEGER_INDEXES:
                    self._client.create_payload_index(
                        self.collection, field, field_schema=qm.PayloadSchemaType.INTEGER
                    )
        self._dimension = dimension
        self._lexical = True

    def _add_lexical_vector(self) -> None:
        """Add the ``bm25`` sparse vector to a collection made before the lexical index."""
        try:
            self._client.create_vector_name(
                self.collection,
                LEXICAL_VECTOR,
                qm.SparseVectorNameConfig(sparse=qm.SparseVectorConfig(modifier=qm.Modifier.IDF)),
            )
        except UnexpectedResponse as exc:
            if exc.status_code is not None and exc.status_code >= 500:
                raise
            raise DimensionMismatch(
                f"the collection '{self.collection}' was made before docvec's lexical index, "
                f"and this Qdrant cannot add the sparse vector '{LEXICAL_VECTOR}' to it (HTTP "
                f"{exc.status_code}); upgrade Qdrant, or set DOCVEC_COLLECTION to a new name and "
                "re-vectorize the projects"
            ) from exc

    def _exists(self) -> bool:
        """Whether the collection exists (reads and deletes on a store never written are no-ops)."""
        if self._dimension is not None:
            return True
        with self._call("look up the collection"):
            return bool(self._client.collection_exists(self.collection))

    def _has_lexical(self) -> bool:
        """Whether the collection exists and has the ``bm25`` sparse vector."""
        if self._lexical:
            return True
        if not self._exists():
            return False
        with self._call("look up the collection"):
            params = self._client.get_collection(self.collection).config.params
        self._lexical = LEXICAL_VECTOR in (params.sparse_vectors or {})
        return self._lexical

    # -- writes ----------------------------------------------------------------------------------

    def upsert(self, points: Sequence[Point]) -> None:
        """Insert or overwrite ``points`` by id, ``UPSERT_BATCH`` per request, each acknowledged.

        Each point is written whole, its dense vector and its ``bm25`` vector together, so an
        overwrite replaces both (no stale lexical terms survive a re-vectorize).

        Raises:
            DimensionMismatch: a vector's length differs from the collection's size.
            VectorStoreUnavailable: the server cannot be reached; batches already sent stay
                written, and a retry overwrites them (the ids are deterministic).
        """
        check_dimensions(self.collection, self._dimension, (p.vector for p in points))
        with self._call("upsert points"):
            for start in range(0, len(points), UPSERT_BATCH):
                batch = points[start : start + UPSERT_BATCH]
                self._client.upsert(
                    self.collection,
                    points=[
                        qm.PointStruct(id=str(p.id), vector=_vectors(p), payload=point_payload(p))
                        for p in batch
                    ],
                    wait=True,
                )

    def delete_document(self, document_id: uuid.UUID, *, from_chunk_index: int = 0) -> None:
        """Delete the document's points with ``chunk_index >= from_chunk_index``."""
        if not self._exists():
            return
        selector = qm.FilterSelector(
            filter=qm.Filter(
                must=[
                    _match("document_id", document_id),
                    qm.FieldCondition(key="chunk_index", range=qm.Range(gte=from_chunk_index)),
                ]
            )
        )
        with self._call("delete a document's points"):
            self._client.delete(self.collection, points_selector=selector, wait=True)

    def delete_points(self, ids: Iterable[uuid.UUID]) -> None:
        """Delete points by id, 256 per request."""
        wanted = [str(i) for i in ids]
        if not wanted or not self._exists():
            return
        for start in range(0, len(wanted), 256):
            selector = qm.PointIdsList(points=list(wanted[start : start + 256]))
            with self._call("delete points"):
                self._client.delete(self.collection, points_selector=selector, wait=True)

    def delete_project(self, project_id: uuid.UUID) -> None:
        """Delete every point of the project."""
        if not self._exists():
            return
        selector = qm.FilterSelector(filter=qm.Filter(must=[_match("project_id", project_id)]))
        with self._call("delete a project's points"):
            self._client.delete(self.collection, points_selector=selector, wait=True)

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

        The project filter is applied by Qdrant, inside the vector search, never afterwards.

        Raises:
            DimensionMismatch: ``vector`` has another length than the collection's size.
            VectorStoreUnavailable: the server cannot be reached.
        """
        check_dimensions(self.collection, self._dimension, [vector])
        if top_k <= 0 or not self._exists():
            return []
        with self._call("search"):
            response = self._client.query_points(
                self.collection, **_dense_request(project_id, vector, top_k, score_threshold)
            )
        return ranked([_hit(p) for p in response.points], "dense")

    def search_lexical(self, project_id: uuid.UUID, text: str, *, top_k: int) -> list[Hit]:
        """The ``top_k`` points of ``project_id`` with the best BM25 score for ``text``.

        The IDF is computed by Qdrant over the project's points only (a corpus filter), so it
        ignores other projects and deleted points, in local mode and on a server alike.

        Raises:
            VectorStoreUnavailable: the server cannot be reached.
        """
        request = _lexical_request(project_id, text, top_k)
        if request is None or not self._has_lexical():
            return []
        with self._call("search"):
            response = self._client.query_points(self.collection, **request)
        return ranked([_hit(p) for p in response.points], "lexical")

    def _hybrid_candidates(
        self,
        project_id: uuid.UUID,
        vector: Sequence[float],
        text: str,
        *,
        depth: int,
        score_threshold: float | None,
    ) -> tuple[list[Hit], list[Hit]]:
        """Both rankings in one batch request (one round trip to a server)."""
        check_dimensions(self.collection, self._dimension, [vector])
        if not self._exists():
            return [], []
        lexical = _lexical_request(project_id, text, depth) if self._has_lexical() else None
        requests = [_dense_request(project_id, vector, depth, score_threshold)]
        if lexical is not None:
            requests.append(lexical)
        with self._call("search"):
            responses = self._client.query_batch_points(
                self.collection,
                requests=[
                    qm.QueryRequest(
                        query=r["query"],
                        using=r.get("using"),
                        filter=r["query_filter"],
                        params=r.get("search_params"),
                        limit=r["limit"],
                        score_threshold=r.get("score_threshold"),
                        with_payload=True,
                        with_vector=False,
                    )
                    for r in requests
                ],
            )
        dense = ranked([_hit(p) for p in responses[0].points], "dense")
        if lexical is None:
            return dense, []
        return dense, ranked([_hit(p) for p in responses[1].points], "lexical")

    def count(
        self, *, project_id: uuid.UUID | None = None, document_id: uuid.UUID | None = None
    ) -> int:
        """Exact number of points, optionally of one project and/or one document."""
        if not self._exists():
            return 0
        conditions: list[qm.Condition] = []
        if project_id is not None:
            conditions.append(_match("project_id", project_id))
        if document_id is not None:
            conditions.append(_match("document_id", document_id))
        with self._call("count points"):
            result = self._client.count(
                self.collection,
                count_filter=qm.Filter(must=conditions) if conditions else None,
                exact=True,
            )
        return result.count

    def point_ids(self, *, document_ids: Iterable[uuid.UUID] | None = None) -> set[uuid.UUID]:
        """Ids of all points, or of the given documents' points (an empty iterable gives none)."""
        if not self._exists():
            return set()
        if document_ids is None:
            return self._scroll_ids(None)
        wanted = [str(d) for d in document_ids]
        ids: set[uuid.UUID] = set()
        for start in range(0, len(wanted), SCROLL_PAGE):
            chunk = wanted[start : start + SCROLL_PAGE]
            ids |= self._scroll_ids(
                qm.Filter(must=[qm.FieldCondition(key="document_id", match=qm.MatchAny(any=chunk))])
            )
        return ids

    def points_without_lexical(self) -> set[uuid.UUID]:
        """Ids of points without the ``bm25`` vector (written before the lexical index)."""
        if not self._exists():
            return set()
        if not self._has_lexical():
            return self._scroll_ids(None)
        return self._scroll_ids(
            qm.Filter(must_not=[qm.HasVectorCondition(has_vector=LEXICAL_VECTOR)])
        )

    def ping(self) -> None:
        """Raise :class:`VectorStoreUnavailable` unless the store answers a collections listing."""
        with self._call("list collections"):
            self._client.get_collections()

    def close(self) -> None:
        """Close the HTTP connections, or release the local folder's lock."""
        with self._guard:
            self._client.close()

    # -- internals -------------------------------------------------------------------------------

    def _scroll_ids(self, scroll_filter: qm.Filter | None) -> set[uuid.UUID]:
        ids: set[uuid.UUID] = set()
        offset: Any = None
        with self._call("list point ids"):
            while True:
                records, offset = self._client.scroll(
                    self.collection,
                    scroll_filter=scroll_filter,
                    limit=SCROLL_PAGE,
                    offset=offset,
                    with_payload=False,
                    with_vectors=False,
                )
                ids.update(uuid.UUID(str(r.id)) for r in records)
                if offset is None:
                    return ids

    @contextlib.contextmanager
    def _call(self, action: str) -> Iterator[None]:
        """Serialise local-mode calls and translate the client's errors into docvec's tree.

        Only failures of the connection or of the server become :class:`VectorStoreUnavailable`;
        client-side mistakes (4xx other than 408/429, bad arguments) propagate unchanged.
        """
        with self._guard:
            try:
                yield
            except ResourceExhaustedResponse as exc:
                raise VectorStoreUnavailable(
                    f"{self._where} is rate-limiting ({action}): {exc}",
                    retry_after_s=float(exc.retry_after_s),
                ) from exc
            except ResponseHandlingException as exc:
                # The client wraps both transport failures and unparsable answers in this class;
                # an answer that does not fit the client's models is a bug, not an outage.
                if isinstance(exc.source, pydantic.ValidationError):
                    raise
                raise VectorStoreUnavailable(
                    f"{self._where} cannot be reached ({action}): {_describe(exc.source)}"
                ) from exc
            except UnexpectedResponse as exc:
                code = exc.status_code
                if code is not None and (code >= 500 or code in (408, 429)):
                    raise VectorStoreUnavailable(
                        f"{self._where} failed ({action}): HTTP {code} {exc.reason_phrase}",
                        retry_after_s=_retry_after(exc.headers.get("Retry-After")),
                    ) from exc
                self._raise_dimension_error(exc.content.decode("utf-8", "replace"), exc)
                raise
            except httpx.TransportError as exc:
                raise VectorStoreUnavailable(
                    f"{self._where} cannot be reached ({action}): {_describe(exc)}"
                ) from exc
            except grpc.RpcError as exc:
                code_of = getattr(exc, "code", None)
                if callable(code_of) and code_of() in _TRANSIENT_GRPC:
                    raise VectorStoreUnavailable(
                        f"{self._where} cannot be reached ({action}): {code_of().name}"
                    ) from exc
                raise
            except ValueError as exc:  # local mode reports a wrong vector size as ValueError
                self._raise_dimension_error(str(exc), exc)
                raise

    def _raise_dimension_error(self, text: str, cause: Exception) -> None:
        found = _DIM_ERROR.search(text)
        if found:
            existing, wanted = int(found.group(1)), int(found.group(2))
            raise dimension_mismatch(self.collection, existing, wanted) from cause


def _open_local(path: Path) -> QdrantClient:
    """Open local mode on ``path``; "locked by another process" becomes a clear error."""
    try:
        return QdrantClient(path=str(path))
    except RuntimeError as exc:
        if _LOCKED_MARKER not in str(exc):
            raise
        _close_half_open(exc)
        raise VectorStoreLocked(
            f"the Qdrant local folder {path} is already opened by another process or client "
            "(local mode locks its folder to one); set DOCVEC_QDRANT_URL to a Qdrant server, or "
            "DOCVEC_VECTOR_STORE=pgvector with DOCVEC_PGVECTOR_URL, so that several processes "
            "can share the store"
        ) from None  # the lock traceback says nothing the message does not


def _close_half_open(exc: BaseException) -> None:
    """Close the local client that failed to lock its folder.

    It opened the lock file and the collections' SQLite files before finding the lock taken and
    drops them unclosed (a ResourceWarning at garbage collection). Closing releases no lock: the
    lock belongs to the other open file description.
    """
    tb = exc.__traceback__
    while tb is not None:
        candidate = tb.tb_frame.f_locals.get("self")
        if isinstance(candidate, QdrantLocal):
            with contextlib.suppress(Exception):
                candidate.close()
            return
        tb = tb.tb_next


def _vectors(point: Point) -> dict[str, Any]:
    """The point's dense vector (unnamed) and its BM25 sparse vector, empty if no terms."""
    indices, values = point.lexical().sparse()
    return {
        "": list(point.vector),
        LEXICAL_VECTOR: qm.SparseVector(indices=indices, values=values),
    }


def _dense_request(
    project_id: uuid.UUID, vector: Sequence[float], limit: int, score_threshold: float | None
) -> dict[str, Any]:
    return {
        "query": list(vector),
        "query_filter": qm.Filter(must=[_match("project_id", project_id)]),
        "limit": limit,
        "score_threshold": score_threshold,
        "with_payload": True,
        "with_vectors": False,
    }


def _lexical_request(project_id: uuid.UUID, text: str, limit: int) -> dict[str, Any] | None:
    """Arguments of a BM25 query, or None when ``text`` has no terms or ``limit`` is 0."""
    indices, values = query_vector(text).sparse()
    if not indices or limit <= 0:
        return None
    project = qm.Filter(must=[_match("project_id", project_id)])
    return {
        "query": qm.SparseVector(indices=indices, values=values),
        "using": LEXICAL_VECTOR,
        "query_filter": project,
        # IDF over the project's own points: other projects neither leak into nor skew it.
        "search_params": qm.SearchParams(idf=qm.IdfCorpusParams(corpus=project)),
        "limit": limit,
        "with_payload": True,
        "with_vectors": False,
    }


def _match(key: str, value: uuid.UUID) -> qm.FieldCondition:
    return qm.FieldCondition(key=key, match=qm.MatchValue(value=str(value)))


def _hit(point: qm.ScoredPoint) -> Hit:
    return hit_from(point.id, point.score, point.payload)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _without_credentials(url: str) -> str:
    """``url`` without a ``user:password@`` part, fit for messages and logs."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:  # an HTTP date; the task's own backoff applies
        return None


__all__ = ["QdrantStore"]
