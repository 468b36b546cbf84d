"""What the two Qdrant engines do alike: a Qdrant collection (a server, or local mode, through
qdrant-client) and a Qdrant Edge shard.

Both are Qdrant: the same point layout (:mod:`app.vectorstore.payload`), the same filters, BM25
by the same IDF modifier, the same wording of a wrong vector size. Only the library differs
(``qdrant_client.models`` or ``qdrant_edge``), so :class:`QdrantFamilyStore` writes the
primitives of :class:`~app.vectorstore.base.VectorStore` that are the same in both once, over the
few calls each engine spells in its own library:

- ``_filter``: a :class:`~app.vectorstore.base.Where` as the library's ``Filter``;
- ``_dense_request`` / ``_lexical_request``: a cosine query / a BM25 query with the IDF over the
  searched project (a corpus filter);
- ``_run``: requests in, scored points out (one request alone, several as one batch);
- ``_write``: one batch of points; ``_scroll``: one page of a listing;
- ``_call``: the context every engine call runs in, which maps the library's errors.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

from typing_extensions import override

from app.errors import DimensionMismatch
from app.lexical import LexicalVector
from app.vectorstore.base import (
    Hit,
    Point,
    VectorStore,
    Where,
    batches,
    parse_dimension_error,
)
from app.vectorstore.payload import hit_from

#: Points per write. A Qdrant server's default request limit is 32 MiB: 256 points of 3072 float
#: dims as JSON stay far below it, and the batch is large enough to amortise round trips. Qdrant
#: Edge has no request limit; there 256 bounds the Python objects built per call (larger batches
#: write no faster: README, Performance).
UPSERT_BATCH = 256
#: Ids per scroll page.
SCROLL_PAGE = 1000

#: Qdrant's own wording of a wrong vector size: a server's (HTTP 400), local mode's and Edge's.
DIMENSION_ERROR = re.compile(r"Vector dimension error: expected dim: (\d+), got (\d+)")

#: A point id as both libraries take and give it (docvec's are UUID strings).
PointId = int | str | uuid.UUID

FilterT = TypeVar("FilterT")
RequestT = TypeVar("RequestT")


class Identified(Protocol):
    """A point as a scroll page lists it (both libraries' ``Record``)."""

    @property
    def id(self) -> PointId: ...


class Scored(Protocol):
    """A point as a query finds it (both libraries' ``ScoredPoint``)."""

    @property
    def id(self) -> PointId: ...

    @property
    def score(self) -> float: ...

    @property
    def payload(self) -> Mapping[str, Any] | None: ...


class QdrantFamilyStore(VectorStore, Generic[FilterT, RequestT]):
    """Points in Qdrant, whichever engine runs it; ``FilterT``/``RequestT`` are the library's
    filter and query-request types.

    Errors: as the engine's ``_call`` maps them; a wrong vector size in Qdrant's wording becomes
    :class:`~app.errors.DimensionMismatch` (:meth:`_dimension_error`).
    """

    # -- what each engine spells ----------------------------------------------------------------

    @abstractmethod
    def _call(self, action: str) -> contextlib.AbstractContextManager[None]:
        """The context of one engine call (``action`` names it in error messages): it maps the
        library's errors into docvec's tree and serialises calls where the engine wants it."""

    @abstractmethod
    def _filter(self, where: Where) -> FilterT:
        """``where`` as the library's filter (``must`` the given conditions, ``must_not`` the
        ``bm25`` vector when ``without_lexical``)."""

    @abstractmethod
    def _dense_request(
        self,
        project: FilterT,
        vector: Sequence[float],
        limit: int,
        score_threshold: float | None,
    ) -> RequestT:
        """A cosine query of the unnamed vector, filtered by ``project``, payload, no vectors."""

    @abstractmethod
    def _lexical_request(
        self, project: FilterT, indices: list[int], values: list[float], limit: int
    ) -> RequestT:
        """A query of the ``bm25`` vector by the sparse vector ``(indices, values)``, filtered by
        ``project`` and with the IDF over ``project`` (so other projects neither leak into nor
        skew it), payload, no vectors."""

    @abstractmethod
    def _run(self, requests: Sequence[RequestT]) -> Sequence[Sequence[Scored]]:
        """The points each request finds, best first (inside ``_call``)."""

    @abstractmethod
    def _write(self, points: Sequence[Point]) -> None:
        """Upsert one batch of at most :data:`UPSERT_BATCH` points (inside ``_call``)."""

    @abstractmethod
    def _scroll(
        self, selection: FilterT | None, offset: PointId | None
    ) -> tuple[Sequence[Identified], PointId | None]:
        """One page of at most :data:`SCROLL_PAGE` of the points ``selection`` selects (None:
        all), from ``offset`` on, without payload or vectors, and the offset of the next page
        (None: that was the last) (inside ``_call``)."""

    # -- shared ----------------------------------------------------------------------------------

    def _selection(self, where: Where) -> FilterT | None:
        """``where`` as a filter, or None for ``Where()`` (every point: no filter at all)."""
        return None if where == Where() else self._filter(where)

    def _dimension_error(self, text: str) -> DimensionMismatch | None:
        """The :class:`DimensionMismatch` an engine message in Qdrant's wording reports, if any."""
        return parse_dimension_error(self.collection, DIMENSION_ERROR, text)

    @override
    def _upsert(self, points: Sequence[Point]) -> None:
        with self._call("upsert points"):
            for batch in batches(points, UPSERT_BATCH):
                self._write(batch)

    @override
    def _query_dense(
        self,
        project_id: uuid.UUID,
        vector: Sequence[float],
        *,
        limit: int,
        score_threshold: float | None,
    ) -> list[Hit]:
        project = self._filter(Where(project_id=project_id))
        with self._call("search"):
            (found,) = self._run([self._dense_request(project, vector, limit, score_threshold)])
        return _hits(found)

    @override
    def _query_lexical(
        self, project_id: uuid.UUID, query: LexicalVector, *, limit: int
    ) -> list[Hit]:
        project = self._filter(Where(project_id=project_id))
        with self._call("search"):
            (found,) = self._run([self._bm25_request(project, query, limit)])
        return _hits(found)

    @override
    def _query_both(
        self,
        project_id: uuid.UUID,
        vector: Sequence[float],
        query: LexicalVector | None,
        *,
        limit: int,
        score_threshold: float | None,
    ) -> tuple[list[Hit], list[Hit]]:
        """Both rankings in one batch request (one round trip to a server)."""
        project = self._filter(Where(project_id=project_id))
        requests = [self._dense_request(project, vector, limit, score_threshold)]
        if query is not None:
            requests.append(self._bm25_request(project, query, limit))
        with self._call("search"):
            results = self._run(requests)
        return _hits(results[0]), (_hits(results[1]) if query is not None else [])

    @override
    def _ids(self, where: Where) -> set[uuid.UUID]:
        selection = self._selection(where)
        ids: set[uuid.UUID] = set()
        offset: PointId | None = None
        with self._call("list point ids"):
            while True:
                page, offset = self._scroll(selection, offset)
                ids.update(uuid.UUID(str(record.id)) for record in page)
                if offset is None:
                    return ids

    def _bm25_request(self, project: FilterT, query: LexicalVector, limit: int) -> RequestT:
        indices, values = query.sparse()
        return self._lexical_request(project, indices, values, limit)


def _hits(found: Sequence[Scored]) -> list[Hit]:
    return [hit_from(point.id, point.score, point.payload) for point in found]


__all__ = ["DIMENSION_ERROR", "SCROLL_PAGE", "UPSERT_BATCH", "PointId", "QdrantFamilyStore"]
