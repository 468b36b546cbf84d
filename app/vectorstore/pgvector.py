"""PostgreSQL + pgvector store: one table of points, HNSW index with cosine distance.

Table ``{table}``: ``id uuid`` (the point id), ``project_id``, ``document_id``, ``chunk_index``,
``file_name``, ``embedding vector(dim)`` and ``lexical jsonb``. Every search filters by
``project_id`` in SQL (DESIGN §2, invariant 5). Vectors travel as pgvector's text form
``'[x,y,...]'`` cast to ``vector``, so no adapter package is needed.

``lexical`` is the lexical side of the chunk, in the same row as its embedding and so written by
the same statement: ``{term: BM25 weight}`` from :mod:`app.lexical`, GIN-indexed. A BM25 query
finds the project's rows holding any query term through that index, takes ``N`` and each term's
``df`` over the project's rows, and scores ``sum(count * idf * weight)`` with Lucene's IDF, the
formula of Qdrant's IDF modifier, so both stores rank alike. PostgreSQL's own full-text search
is not used: ``ts_rank`` has no IDF, and its parsers would tokenise differently from the Qdrant
store. Rows written before the lexical index have ``lexical`` NULL until re-vectorized
(``docvec reconcile`` lists them).
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection
from typing_extensions import override

from app.db.session import normalize_url
from app.errors import PermanentError, VectorStoreUnavailable
from app.lexical import LexicalVector
from app.vectorstore.base import (
    Hit,
    Point,
    StoredVector,
    VectorLike,
    VectorStore,
    Where,
    as_floats,
    batches,
    dimension_mismatch,
    parse_dimension_error,
    text_sha256,
)

#: Rows per executemany batch: bounds the memory of one batch of parameters (256 x 3072 floats as
#: text is ~6 MB) while keeping round trips few (psycopg pipelines an executemany).
UPSERT_BATCH = 256
#: Bounds of pgvector's ``hnsw.ef_search`` (pgvector README: "default 40", valid 1..1000).
EF_SEARCH_DEFAULT = 40
EF_SEARCH_MAX = 1000
#: pgvector release that added ``hnsw.iterative_scan`` (filtered searches that keep scanning the
#: index until ``LIMIT`` rows passed the filter).
ITERATIVE_SCAN_SINCE = (0, 8, 0)

#: The table name is interpolated into SQL, so it must be a plain identifier. 48 characters leave
#: room for the index-name suffixes within PostgreSQL's 63-byte identifier limit.
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}")
#: SQLSTATEs of CREATE EXTENSION failing because pgvector is absent or we may not install it.
_NO_EXTENSION = {"58P01", "0A000", "42501"}
#: pgvector's wording of a wrong vector size ("expected 3 dimensions, not 2").
_DIM_ERROR = re.compile(r"expected (\d+) dimensions, not (\d+)")


class PgVectorStore(VectorStore):
    """Points in one PostgreSQL table with the pgvector extension.

    Args:
        url: PostgreSQL URL (``postgresql://user:pw@host:5432/db`` or a socket URL such as
            ``postgresql://postgres:@/postgres?host=/run/pg``).
        table: table name (``DOCVEC_COLLECTION``); letters, digits and ``_``, at most 48.
        pool_size: connections kept open per process.
        connect_timeout_s: seconds to wait for a connection before reporting the store down.

    Raises:
        ValueError: ``table`` is not a plain identifier.
    """

    name = "pgvector"

    def __init__(
        self,
        *,
        url: str,
        table: str,
        pool_size: int = 5,
        connect_timeout_s: float = 10,
        engine: sa.Engine | None = None,
    ) -> None:
        if not _TABLE_NAME.fullmatch(table):
            raise ValueError(
                f"pgvector table name {table!r} must be letters, digits and '_' "
                "(not starting with a digit), at most 48 characters"
            )
        super().__init__(collection=table)
        self.table = table
        self._q = f'"{table}"'  # quoted, so mixed case survives
        #: A sibling (another table, :meth:`sibling`) shares its maker's pool and leaves it open.
        self._owns_engine = engine is None
        self._engine = engine or sa.create_engine(
            normalize_url(url),
            pool_size=pool_size,
            # A connection dropped by a database restart is replaced instead of failing a task.
            pool_pre_ping=True,
            connect_args={"connect_timeout": max(1, round(connect_timeout_s))},
        )
        self._where = f"PostgreSQL at {self._engine.url.render_as_string(hide_password=True)}"
        #: Whether the table has the ``lexical`` column (None: not looked up yet).
        self._lexical: bool | None = None
        self._iterative_scan: bool | None = None

    # -- collection ------------------------------------------------------------------------------

    @override
    def _create_collection(self, dimension: int) -> None:
        """Create the extension, the table for ``dimension``-sized vectors and its indexes.

        Idempotent. The DDL runs under a transaction-scoped advisory lock keyed by the table name,
        so workers starting together neither race nor deadlock.

        Raises:
            DimensionMismatch: the table exists with another vector size.
            PermanentError: pgvector is not installed in this PostgreSQL, or we may not create it.
            VectorStoreUnavailable: PostgreSQL cannot be reached.
        """
        t, q = self.table, self._q
        with self._connect("create the table") as conn:
            conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"docvec:{t}"}
            )
            self._ensure_extension(conn)
            existing = self._stored_dimension(conn)
            if existing is not None and existing != dimension:
                raise dimension_mismatch(t, existing, dimension)
            if existing is None:
                conn.execute(
                    sa.text(
                        f"CREATE TABLE IF NOT EXISTS {q} ("
                        " id uuid PRIMARY KEY,"
                        " project_id uuid NOT NULL,"
                        " document_id uuid NOT NULL,"
                        " chunk_index integer NOT NULL,"
                        " file_name text NOT NULL,"
                        f" embedding vector({int(dimension)}) NOT NULL,"
                        " lexical jsonb,"
                        " text_sha256 text)"
                    )
                )
            elif not self._lexical_column(conn):
                # A table made before the lexical index: its rows keep NULL until re-vectorized.
                conn.execute(sa.text(f"ALTER TABLE {q} ADD COLUMN IF NOT EXISTS lexical jsonb"))
            # Tables made before points carried their text's hash get the column (NULL: such a
            # point's vector is never reused, and it gets its hash when next written).
            conn.execute(sa.text(f"ALTER TABLE {q} ADD COLUMN IF NOT EXISTS text_sha256 text"))
            conn.execute(
                sa.text(f'CREATE INDEX IF NOT EXISTS "{t}_project_idx" ON {q} (project_id)')
            )
            conn.execute(
                sa.text(
                    f'CREATE INDEX IF NOT EXISTS "{t}_document_idx" '
                    f"ON {q} (document_id, chunk_index)"
                )
            )
            conn.execute(
                sa.text(
                    f'CREATE INDEX IF NOT EXISTS "{t}_embedding_hnsw_idx" '
                    f"ON {q} USING hnsw (embedding vector_cosine_ops)"
                )
            )
            # jsonb_ops (not jsonb_path_ops): it serves the key-exists operators ? and ?|.
            conn.execute(
                sa.text(f'CREATE INDEX IF NOT EXISTS "{t}_lexical_idx" ON {q} USING gin (lexical)')
            )
        self._lexical = True

    @override
    def _exists(self) -> bool:
        if self._dimension is not None:
            return True
        with self._connect("look up the table") as conn:
            return bool(
                conn.execute(sa.text("SELECT to_regclass(:t) IS NOT NULL"), {"t": self._q}).scalar()
            )

    @override
    def _drop_collection(self) -> None:
        with self._connect("drop the table") as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {self._q}"))
        self._lexical = None

    @override
    def sibling(self, collection: str) -> PgVectorStore:
        """The table ``collection`` in the same database, on this store's connection pool."""
        return PgVectorStore(url=str(self._engine.url), table=collection, engine=self._engine)

    @override
    def _has_lexical(self) -> bool:
        """Whether the table exists and has the ``lexical`` column."""
        if self._lexical:
            return True
        with self._connect("look up the table") as conn:
            self._lexical = self._lexical_column(conn)
        return self._lexical

    def _lexical_column(self, conn: Connection) -> bool:
        return bool(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass(:t) "
                    "AND attname = 'lexical' AND NOT attisdropped"
                ),
                {"t": self._q},
            ).scalar_one()
        )

    # -- writes ----------------------------------------------------------------------------------

    @override
    def _upsert(self, points: Sequence[Point]) -> None:
        """Insert or overwrite ``points`` by id, all in one transaction, ``UPSERT_BATCH`` rows per
        executemany.

        The embedding and the lexical terms of a point are one row, written by one statement.

        Raises:
            VectorStoreUnavailable: PostgreSQL cannot be reached (nothing was written).
        """
        statement = sa.text(
            f"INSERT INTO {self._q} "
            "(id, project_id, document_id, chunk_index, file_name, embedding, lexical, "
            "text_sha256) "
            "VALUES (:id, :project_id, :document_id, :chunk_index, :file_name, "
            "CAST(:embedding AS vector), CAST(:lexical AS jsonb), :text_sha256) "
            "ON CONFLICT (id) DO UPDATE SET project_id = EXCLUDED.project_id, "
            "document_id = EXCLUDED.document_id, chunk_index = EXCLUDED.chunk_index, "
            "file_name = EXCLUDED.file_name, embedding = EXCLUDED.embedding, "
            "lexical = EXCLUDED.lexical, text_sha256 = EXCLUDED.text_sha256"
        )
        with self._connect("upsert points") as conn:
            for batch in batches(points, UPSERT_BATCH):
                conn.execute(
                    statement,
                    [
                        {
                            "id": p.id,
                            "project_id": p.project_id,
                            "document_id": p.document_id,
                            "chunk_index": int(p.chunk_index),
                            "file_name": p.file_name,
                            "embedding": _vector_text(p.vector),
                            "lexical": json.dumps(p.lexical().weights, ensure_ascii=False),
                            "text_sha256": text_sha256(p.text),
                        }
                        for p in batch
                    ],
                )

    @override
    def _delete(self, where: Where) -> None:
        condition, params = _sql_where(where)
        with self._connect("delete points") as conn:
            conn.execute(sa.text(f"DELETE FROM {self._q}{condition}"), params)

    @override
    def _delete_points(self, ids: Sequence[uuid.UUID]) -> None:
        with self._connect("delete points") as conn:
            conn.execute(sa.text(f"DELETE FROM {self._q} WHERE id = ANY(:ids)"), {"ids": list(ids)})

    # -- reads -----------------------------------------------------------------------------------

    @override
    def _vectors(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, StoredVector]:
        with self._connect("read vectors") as conn:
            rows = conn.execute(
                sa.text(
                    f"SELECT id, embedding::real[], text_sha256 FROM {self._q} WHERE id = ANY(:ids)"
                ),
                {"ids": list(ids)},
            ).all()
        return {row[0]: StoredVector(np.asarray(row[1], dtype=np.float32), row[2]) for row in rows}

    @override
    def _query_dense(
        self,
        project_id: uuid.UUID,
        vector: Sequence[float],
        *,
        limit: int,
        score_threshold: float | None,
    ) -> list[Hit]:
        """The ``limit`` points of ``project_id`` nearest to ``vector`` by cosine, best first.

        The HNSW index is approximate and, before pgvector 0.8, filters *after* collecting
        ``hnsw.ef_search`` candidates: when the project is a small part of the table the index
        can yield fewer than ``limit`` rows of it. Then the query is repeated as an exact scan
        of the project's rows (through the ``project_id`` index), so ``limit`` is honoured.
        ``score_threshold`` is applied to the rows found.

        Raises:
            VectorStoreUnavailable: PostgreSQL cannot be reached.
        """
        statement = sa.text(
            "SELECT id, project_id, document_id, chunk_index, file_name, "
            "1 - (embedding <=> CAST(:q AS vector)) AS score "
            f"FROM {self._q} WHERE project_id = :p "
            "ORDER BY embedding <=> CAST(:q AS vector) LIMIT :k"
        )
        params = {"q": _vector_text(vector), "p": project_id, "k": limit}
        with self._connect("search") as conn:
            self._set(conn, "hnsw.ef_search", min(EF_SEARCH_MAX, max(EF_SEARCH_DEFAULT, limit)))
            if self._supports_iterative_scan(conn):
                self._set(conn, "hnsw.iterative_scan", "strict_order")
            rows = conn.execute(statement, params).all()
            if len(rows) < limit:
                # Exact fallback: HNSW cannot serve bitmap scans, so with plain index scans off
                # the planner reads the project's rows through the project_id btree and sorts.
                self._set(conn, "enable_indexscan", "off")
                rows = conn.execute(statement, params).all()
        hits = [_hit(row) for row in rows]
        if score_threshold is not None:
            hits = [h for h in hits if h.score >= score_threshold]
        return hits

    @override
    def _query_lexical(
        self, project_id: uuid.UUID, query: LexicalVector, *, limit: int
    ) -> list[Hit]:
        """The ``limit`` points of ``project_id`` with the best BM25 score for ``query``.

        One statement: the GIN index finds the project's rows holding a query term and counts
        each term's ``df``; ``N`` counts the project's rows that have a lexical side. Ties are
        broken by id.

        Raises:
            VectorStoreUnavailable: PostgreSQL cannot be reached.
        """
        weights = query.weights
        table = self._q
        # One pass over the project's rows holding a query term (GIN index on ?|): each row's
        # weights of those terms (jsonb_each: the row's jsonb is read once), from which come
        # each term's df and each row's score.
        statement = sa.text(
            "WITH query AS ("
            "  SELECT u.term, u.n FROM unnest(CAST(:terms AS text[]), CAST(:counts AS float8[]))"
            "  AS u(term, n)),"
            " hits AS MATERIALIZED ("
            "  SELECT c.id, c.project_id, c.document_id, c.chunk_index, c.file_name,"
            "   e.key AS term, CAST(e.value AS float8) AS weight"
            f"  FROM {table} AS c CROSS JOIN LATERAL jsonb_each_text(c.lexical) AS e"
            "  WHERE c.project_id = :p AND c.lexical ?| CAST(:terms AS text[])"
            "   AND e.key = ANY(CAST(:terms AS text[]))),"
            f" corpus AS (SELECT count(*)::float8 AS n FROM {table}"
            "  WHERE project_id = :p AND lexical IS NOT NULL),"
            " idf AS ("
            "  SELECT query.term, query.n * ln(1 + (corpus.n - d.df + 0.5) / (d.df + 0.5)) AS w"
            "  FROM query CROSS JOIN corpus JOIN ("
            "   SELECT term, count(*)::float8 AS df FROM hits GROUP BY term) AS d"
            "  ON d.term = query.term)"
            " SELECT h.id, h.project_id, h.document_id, h.chunk_index, h.file_name,"
            "  sum(idf.w * h.weight) AS score"
            " FROM hits AS h JOIN idf ON idf.term = h.term"
            " GROUP BY h.id, h.project_id, h.document_id, h.chunk_index, h.file_name"
            " ORDER BY score DESC, h.id LIMIT :k"
        )
        params = {
            "terms": list(weights),
            "counts": list(weights.values()),
            "p": project_id,
            "k": limit,
        }
        with self._connect("search") as conn:
            rows = conn.execute(statement, params).all()
        return [_hit(row) for row in rows]

    @override
    def _count(self, where: Where) -> int:
        condition, params = _sql_where(where)
        with self._connect("count points") as conn:
            return int(
                conn.execute(
                    sa.text(f"SELECT count(*) FROM {self._q}{condition}"), params
                ).scalar_one()
            )

    @override
    def _ids(self, where: Where) -> set[uuid.UUID]:
        condition, params = _sql_where(where)
        with self._connect("list point ids") as conn:
            return set(
                conn.execute(sa.text(f"SELECT id FROM {self._q}{condition}"), params).scalars()
            )

    @override
    def ping(self) -> None:
        """Raise :class:`VectorStoreUnavailable` unless PostgreSQL answers ``SELECT 1``."""
        with self._connect("ping") as conn:
            conn.execute(sa.text("SELECT 1"))

    @override
    def close(self) -> None:
        """Close every pooled connection (a sibling leaves the shared pool to its maker)."""
        if self._owns_engine:
            self._engine.dispose()

    # -- internals -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connect(self, action: str) -> Iterator[Connection]:
        """One transaction, with connection failures turned into :class:`VectorStoreUnavailable`.

        A connection lost in the middle of the transaction (SQLAlchemy then invalidates it, and
        the pool's pre-ping replaces the others at their next checkout) is reported as dropped,
        a refused or timed-out connection as unreachable: both are transient, and nothing of the
        transaction was committed.

        SQL errors (a missing table, bad data) are not outages and propagate unchanged, except
        pgvector's "expected N dimensions" which becomes :class:`DimensionMismatch`.
        """
        try:
            with self._engine.begin() as conn:
                yield conn
        except sa_exc.TimeoutError as exc:  # no pooled connection free in time
            raise VectorStoreUnavailable(
                f"{self._where} cannot be reached ({action}): {_first_line(exc)}"
            ) from exc
        except sa_exc.DBAPIError as exc:
            if exc.connection_invalidated:
                raise VectorStoreUnavailable(
                    f"{self._where} dropped the connection ({action}): {_first_line(exc)}"
                ) from exc
            if isinstance(exc, sa_exc.OperationalError):
                raise VectorStoreUnavailable(
                    f"{self._where} cannot be reached ({action}): {_first_line(exc)}"
                ) from exc
            mismatch = parse_dimension_error(self.table, _DIM_ERROR, str(exc.orig))
            if isinstance(exc, sa_exc.DataError) and mismatch is not None:
                raise mismatch from exc
            raise

    def _ensure_extension(self, conn: Connection) -> None:
        installed = conn.execute(
            sa.text("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
        ).first()
        if installed:
            return
        try:
            with conn.begin_nested():
                conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
        except sa_exc.DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) not in _NO_EXTENSION:
                raise
            raise PermanentError(
                f"{self._where} cannot provide pgvector ({_first_line(exc)}); install the "
                "pgvector extension there (or have an administrator run CREATE EXTENSION vector), "
                "or use DOCVEC_VECTOR_STORE=qdrant"
            ) from exc

    def _stored_dimension(self, conn: Connection) -> int | None:
        """The table's vector size (pgvector keeps it as the column's type modifier), or None."""
        return conn.execute(
            sa.text(
                "SELECT a.atttypmod FROM pg_attribute a "
                "WHERE a.attrelid = to_regclass(:t) AND a.attname = 'embedding' "
                "AND NOT a.attisdropped"
            ),
            {"t": self._q},
        ).scalar_one_or_none()

    def _supports_iterative_scan(self, conn: Connection) -> bool:
        if self._iterative_scan is None:
            version = conn.execute(
                sa.text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            ).scalar_one_or_none()
            self._iterative_scan = _version(version) >= ITERATIVE_SCAN_SINCE
        return self._iterative_scan

    @staticmethod
    def _set(conn: Connection, setting: str, value: Any) -> None:
        """``SET LOCAL setting = value`` (set_config, because SET takes no bind parameters)."""
        conn.execute(
            sa.text("SELECT set_config(:name, :value, true)"),
            {"name": setting, "value": str(value)},
        )


def _sql_where(where: Where) -> tuple[str, dict[str, object]]:
    """``where`` as a SQL ``WHERE`` clause (with its leading space; empty for ``Where()``) and its
    parameters."""
    clauses = [f"{column} = :{column}" for column, _ in where.equals()]
    params: dict[str, object] = dict(where.equals())
    if where.document_ids is not None:
        clauses.append("document_id = ANY(:document_ids)")
        params["document_ids"] = list(where.document_ids)
    if where.from_chunk_index is not None:
        clauses.append("chunk_index >= :from_chunk_index")
        params["from_chunk_index"] = where.from_chunk_index
    if where.without_lexical:
        clauses.append("lexical IS NULL")
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _hit(row: Any) -> Hit:
    return Hit(
        id=row.id,
        score=float(row.score),
        document_id=row.document_id,
        chunk_index=row.chunk_index,
        file_name=row.file_name,
        project_id=row.project_id,
    )


def _vector_text(vector: VectorLike) -> str:
    """pgvector's text form: ``[x,y,...]`` with each float's shortest round-trip repr."""
    return "[" + ",".join(map(repr, as_floats(vector))) + "]"


def _version(text: str | None) -> tuple[int, ...]:
    parts = re.findall(r"\d+", text or "")
    return tuple(int(p) for p in parts[:3])


def _first_line(exc: sa_exc.DBAPIError | sa_exc.SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return lines[0] if lines else type(orig).__name__


__all__ = ["PgVectorStore"]
