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
import threading
import uuid
from collections.abc import Iterator, Sequence
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
from typing_extensions import override

from app.errors import DimensionMismatch, VectorStoreLocked, VectorStoreUnavailable
from app.vectorstore.base import (
    Point,
    StoredVector,
    VectorStore,
    Where,
    as_floats,
    dimension_mismatch,
)
from app.vectorstore.payload import (
    DENSE_VECTOR,
    INTEGER_INDEXES,
    KEYWORD_INDEXES,
    LEXICAL_VECTOR,
    TEXT_HASH,
    point_payload,
    point_vectors,
    stored_vector,
)
from app.vectorstore.qdrant_family import SCROLL_PAGE, PointId, QdrantFamilyStore

_LOCKED_MARKER = "already accessed by another instance"
#: gRPC status codes that mean "try again later" rather than "this request is wrong".
_TRANSIENT_GRPC = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
}


class QdrantStore(QdrantFamilyStore[qm.Filter, qm.QueryRequest]):
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
        super().__init__(collection=collection)
        #: Whether the collection has the sparse vector ``bm25`` (None: not looked up yet).
        self._lexical: bool | None = None
        #: False for a sibling (another collection on this store's client): closing it leaves
        #: the shared client open.
        self._owns_client = True
        if url:
            self._location = f"Qdrant at {_without_credentials(url)}"
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
            self._location = f"Qdrant local folder {path}"
            self.local = True
            self._client = _open_local(path)
            # Local mode's in-memory index is plain dicts and numpy arrays: one call at a time.
            self._guard = threading.RLock()
        else:
            raise ValueError("QdrantStore needs a server url or a local path")

    # -- collection ------------------------------------------------------------------------------

    @override
    def _create_collection(self, dimension: int) -> None:
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

    @override
    def _exists(self) -> bool:
        if self._dimension is not None:
            return True
        with self._call("look up the collection"):
            return bool(self._client.collection_exists(self.collection))

    @override
    def _vectors(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, StoredVector]:
        with self._call("read vectors"):
            records = self._client.retrieve(
                self.collection,
                ids=[str(i) for i in ids],
                with_payload=[TEXT_HASH],
                with_vectors=[DENSE_VECTOR] if DENSE_VECTOR else True,
            )
        out: dict[uuid.UUID, StoredVector] = {}
        for r in records:
            found = stored_vector(r.vector, r.payload)
            if found is not None:
                out[uuid.UUID(str(r.id))] = found
        return out

    @override
    def _drop_collection(self) -> None:
        with self._call("delete the collection"):
            self._client.delete_collection(self.collection)
        self._lexical = None

    @override
    def sibling(self, collection: str) -> QdrantStore:
        """The collection ``collection`` on this store's client (one client per server or local
        folder per process)."""
        other = QdrantStore.__new__(QdrantStore)
        VectorStore.__init__(other, collection=collection)
        other._lexical = None
        other._owns_client = False
        other._location, other.local = self._location, self.local
        other._client, other._guard = self._client, self._guard
        return other

    @override
    def point_alias(self, alias: str) -> bool:
        """Point ``alias`` at this collection: the old alias deleted and the new one created in
        one ``update_collection_aliases`` call, which Qdrant applies atomically."""
        with self._call("switch the alias"):
            existing = {a.alias_name for a in self._client.get_aliases().aliases}
            ops: list[qm.AliasOperations] = []
            if alias in existing:
                ops.append(qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=alias)))
            ops.append(
                qm.CreateAliasOperation(
                    create_alias=qm.CreateAlias(collection_name=self.collection, alias_name=alias)
                )
            )
            self._client.update_collection_aliases(change_aliases_operations=ops)
        return True

    @override
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

    # -- the engine's calls ----------------------------------------------------------------------

    @override
    def _write(self, points: Sequence[Point]) -> None:
        """One acknowledged upsert request (``wait=True``); batches already sent stay written if a
        later one fails, and a retry overwrites them (the ids are deterministic)."""
        self._client.upsert(
            self.collection,
            points=[
                qm.PointStruct(
                    id=str(p.id), vector=point_vectors(p, qm.SparseVector), payload=point_payload(p)
                )
                for p in points
            ],
            wait=True,
        )

    @override
    def _delete(self, where: Where) -> None:
        selector = qm.FilterSelector(filter=self._filter(where))
        with self._call("delete points"):
            self._client.delete(self.collection, points_selector=selector, wait=True)

    @override
    def _delete_points(self, ids: Sequence[uuid.UUID]) -> None:
        selector = qm.PointIdsList(points=[str(i) for i in ids])
        with self._call("delete points"):
            self._client.delete(self.collection, points_selector=selector, wait=True)

    @override
    def _run(self, requests: Sequence[qm.QueryRequest]) -> list[list[qm.ScoredPoint]]:
        """One request by ``query_points``, several by one ``query_batch_points``; the project
        filter is applied by Qdrant inside the vector search, never afterwards."""
        if len(requests) == 1:
            (request,) = requests
            assert request.limit is not None  # the request builders always set it
            answer = self._client.query_points(
                self.collection,
                query=request.query,
                using=request.using,
                query_filter=request.filter,
                search_params=request.params,
                limit=request.limit,
                score_threshold=request.score_threshold,
                with_payload=True,
                with_vectors=False,
            )
            return [answer.points]
        answers = self._client.query_batch_points(self.collection, requests=requests)
        return [answer.points for answer in answers]

    @override
    def _count(self, where: Where) -> int:
        with self._call("count points"):
            result = self._client.count(
                self.collection, count_filter=self._selection(where), exact=True
            )
        return result.count

    @override
    def _scroll(
        self, selection: qm.Filter | None, offset: PointId | None
    ) -> tuple[list[qm.Record], PointId | None]:
        return self._client.scroll(
            self.collection,
            scroll_filter=selection,
            limit=SCROLL_PAGE,
            offset=offset,
            with_payload=False,
            with_vectors=False,
        )

    @override
    def ping(self) -> None:
        """Raise :class:`VectorStoreUnavailable` unless the store answers a collections listing."""
        with self._call("list collections"):
            self._client.get_collections()

    @override
    def close(self) -> None:
        """Close the HTTP connections, or release the local folder's lock (a sibling leaves the
        shared client to the store that made it)."""
        if not self._owns_client:
            return
        with self._guard:
            self._client.close()

    # -- the library's spelling ------------------------------------------------------------------

    @override
    def _filter(self, where: Where) -> qm.Filter:
        must: list[qm.Condition] = [
            qm.FieldCondition(key=key, match=qm.MatchValue(value=str(value)))
            for key, value in where.equals()
        ]
        if where.document_ids is not None:
            any_of = qm.MatchAny(any=[str(d) for d in where.document_ids])
            must.append(qm.FieldCondition(key="document_id", match=any_of))
        if where.from_chunk_index is not None:
            at_least = qm.Range(gte=where.from_chunk_index)
            must.append(qm.FieldCondition(key="chunk_index", range=at_least))
        lacking: list[qm.Condition] | None = None
        if where.without_lexical:
            lacking = [qm.HasVectorCondition(has_vector=LEXICAL_VECTOR)]
        return qm.Filter(must=must or None, must_not=lacking)

    @override
    def _dense_request(
        self,
        project: qm.Filter,
        vector: Sequence[float],
        limit: int,
        score_threshold: float | None,
    ) -> qm.QueryRequest:
        return qm.QueryRequest(
            query=as_floats(vector),
            filter=project,
            limit=limit,
            score_threshold=score_threshold,
            with_payload=True,
            with_vector=False,
        )

    @override
    def _lexical_request(
        self, project: qm.Filter, indices: list[int], values: list[float], limit: int
    ) -> qm.QueryRequest:
        return qm.QueryRequest(
            query=qm.SparseVector(indices=indices, values=values),
            using=LEXICAL_VECTOR,
            filter=project,
            params=qm.SearchParams(idf=qm.IdfCorpusParams(corpus=project)),
            limit=limit,
            with_payload=True,
            with_vector=False,
        )

    @override
    @contextlib.contextmanager
    def _call(self, action: str) -> Iterator[None]:
        """Serialise local-mode calls and translate the client's errors into docvec's tree.

        Only failures of the connection or of the server become :class:`VectorStoreUnavailable`;
        a wrong vector size becomes :class:`DimensionMismatch`; client-side mistakes (4xx other
        than 408/429, bad arguments) propagate unchanged.
        """
        with self._guard:
            try:
                yield
            except ResourceExhaustedResponse as exc:
                raise VectorStoreUnavailable(
                    f"{self._location} is rate-limiting ({action}): {exc}",
                    retry_after_s=float(exc.retry_after_s),
                ) from exc
            except ResponseHandlingException as exc:
                # The client wraps both transport failures and unparsable answers in this class;
                # an answer that does not fit the client's models is a bug, not an outage.
                if isinstance(exc.source, pydantic.ValidationError):
                    raise
                raise VectorStoreUnavailable(
                    f"{self._location} cannot be reached ({action}): {_describe(exc.source)}"
                ) from exc
            except UnexpectedResponse as exc:
                code = exc.status_code
                if code is not None and (code >= 500 or code in (408, 429)):
                    raise VectorStoreUnavailable(
                        f"{self._location} failed ({action}): HTTP {code} {exc.reason_phrase}",
                        retry_after_s=_retry_after(exc.headers.get("Retry-After")),
                    ) from exc
                mismatch = self._dimension_error(exc.content.decode("utf-8", "replace"))
                if mismatch is not None:
                    raise mismatch from exc
                raise
            except httpx.TransportError as exc:
                raise VectorStoreUnavailable(
                    f"{self._location} cannot be reached ({action}): {_describe(exc)}"
                ) from exc
            except grpc.RpcError as exc:
                code_of = getattr(exc, "code", None)
                if callable(code_of) and code_of() in _TRANSIENT_GRPC:
                    raise VectorStoreUnavailable(
                        f"{self._location} cannot be reached ({action}): {code_of().name}"
                    ) from exc
                raise
            except ValueError as exc:  # local mode reports a wrong vector size as ValueError
                mismatch = self._dimension_error(str(exc))
                if mismatch is not None:
                    raise mismatch from exc
                raise


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
