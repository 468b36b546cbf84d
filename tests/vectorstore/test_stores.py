"""One suite, every store: Qdrant (qdrant-client's local mode in a temporary folder), Qdrant Edge
(a temporary folder) and pgvector (pgserver).

Every behaviour of :class:`app.vectorstore.VectorStore` is asserted against every implementation,
and a congruence test runs the same random workload on all three and compares the rankings.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import random
import socket
import subprocess
import sys
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from qdrant_client.http.exceptions import UnexpectedResponse

from app import lexical
from app.config import Settings
from app.errors import DimensionMismatch, VectorStoreLocked, VectorStoreUnavailable
from app.vectorstore import RRF_K, Hit, Point, VectorStore, create_vector_store, point_id
from app.vectorstore.base import text_sha256
from app.vectorstore.edge import EdgeStore
from app.vectorstore.pgvector import PgVectorStore
from app.vectorstore.qdrant import QdrantStore

REPO = Path(__file__).resolve().parents[2]
COLLECTION = "test_chunks"
DIM = 4

OpenStore = Callable[[], VectorStore]


@pytest.fixture(params=["qdrant", "edge", "pgvector"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """Opens stores on one collection (Qdrant folder / Edge folder / pgvector table) private to
    the test.

    Every store opened is closed at teardown (closing twice is harmless).
    """
    opened: list[VectorStore] = []
    if request.param == "qdrant":

        def make() -> VectorStore:
            return QdrantStore(collection=COLLECTION, path=tmp_path / "qdrant")
    elif request.param == "edge":

        def make() -> VectorStore:
            return EdgeStore(collection=COLLECTION, path=tmp_path / "edge")
    else:
        url: str = request.getfixturevalue("pgvector_url")
        table: str = request.getfixturevalue("fresh_pgvector_table")

        def make() -> VectorStore:
            return PgVectorStore(url=url, table=table, pool_size=2)

    def opener() -> VectorStore:
        store = make()
        opened.append(store)
        return store

    yield opener
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: OpenStore) -> VectorStore:
    """A store whose collection exists for ``DIM``-dimensional vectors."""
    s = open_store()
    s.ensure_collection(DIM)
    return s


def _points(
    project: uuid.UUID,
    document: uuid.UUID,
    vectors: Sequence[Sequence[float]],
    *,
    file_name: str = "doc.txt",
    texts: Sequence[str] | None = None,
) -> list[Point]:
    return [
        Point(
            id=point_id(document, i),
            vector=v,
            project_id=project,
            document_id=document,
            chunk_index=i,
            file_name=file_name,
            text=texts[i] if texts is not None else "",
        )
        for i, v in enumerate(vectors)
    ]


def _angle(degrees: float, scale: float = 1.0) -> list[float]:
    """A DIM-vector at ``degrees`` from the x axis: its cosine with [1, 0, 0, 0] is cos(degrees)."""
    r = math.radians(degrees)
    return [scale * math.cos(r), scale * math.sin(r), 0.0, 0.0]


X_AXIS = [1.0, 0.0, 0.0, 0.0]


# -- collection --------------------------------------------------------------------------------


def test_ensure_collection_is_idempotent(store: VectorStore) -> None:
    project, doc = uuid.uuid4(), uuid.uuid4()
    store.upsert(_points(project, doc, [X_AXIS]))
    store.ensure_collection(DIM)
    store.ensure_collection(DIM)
    assert store.count() == 1


def test_dimension_mismatch_names_both_sizes_and_the_remedy(
    store: VectorStore, open_store: OpenStore
) -> None:
    with pytest.raises(DimensionMismatch) as caught:
        store.ensure_collection(8)
    message = str(caught.value)
    assert "4-dim" in message and "8-dim" in message
    assert "docvec index create" in message

    project, doc = uuid.uuid4(), uuid.uuid4()
    with pytest.raises(DimensionMismatch, match="3-dim"):
        store.upsert(_points(project, doc, [[1.0, 0.0, 0.0]]))
    with pytest.raises(DimensionMismatch):
        store.search(project, [1.0] * 8, top_k=3)

    # A process that never called ensure_collection gets the store's own refusal, translated.
    store.close()
    other = open_store()
    with pytest.raises(DimensionMismatch, match="4-dim"):
        other.upsert(_points(project, doc, [[1.0, 0.0, 0.0]]))


# -- writes ------------------------------------------------------------------------------------


def test_upsert_twice_overwrites_the_same_points(store: VectorStore) -> None:
    project, doc = uuid.uuid4(), uuid.uuid4()
    store.upsert(_points(project, doc, [_angle(0), _angle(90), _angle(180)]))
    # Same ids (same document, same chunk indexes), new vectors: chunk 2 now points along x.
    store.upsert(_points(project, doc, [_angle(90), _angle(180), _angle(0)], file_name="v2.txt"))

    assert store.count() == 3
    assert store.count(document_id=doc) == 3
    best = store.search(project, X_AXIS, top_k=1)[0]
    assert best.id == point_id(doc, 2)
    assert best.chunk_index == 2
    assert best.file_name == "v2.txt"
    assert best.score == pytest.approx(1.0, abs=1e-5)


def test_upsert_of_many_points_spans_batches(store: VectorStore) -> None:
    project, doc = uuid.uuid4(), uuid.uuid4()
    rng = random.Random(7)
    vectors = [[rng.gauss(0, 1) for _ in range(DIM)] for _ in range(300)]  # > 1 batch of 256
    store.upsert(_points(project, doc, vectors))
    store.upsert([])  # nothing to do, no error
    assert store.count(project_id=project) == 300
    assert store.point_ids(document_ids=[doc]) == {point_id(doc, i) for i in range(300)}


def test_delete_document_from_chunk_index_deletes_only_the_tail(store: VectorStore) -> None:
    project, doc, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    store.upsert(_points(project, doc, [_angle(10 * i) for i in range(5)]))
    store.upsert(_points(project, other, [_angle(10 * i) for i in range(5)]))

    store.delete_document(doc, from_chunk_index=3)  # the document shrank to 3 chunks
    assert store.point_ids(document_ids=[doc]) == {point_id(doc, i) for i in range(3)}
    assert store.count(document_id=other) == 5

    store.delete_document(doc)
    assert store.count(document_id=doc) == 0
    assert store.count(document_id=other) == 5


def test_delete_project(store: VectorStore) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    store.upsert(_points(a, uuid.uuid4(), [_angle(0), _angle(10)]))
    store.upsert(_points(b, uuid.uuid4(), [_angle(20)]))
    store.delete_project(a)
    assert store.count(project_id=a) == 0
    assert store.count(project_id=b) == 1
    assert store.search(a, X_AXIS, top_k=5) == []


# -- reads -------------------------------------------------------------------------------------


def test_search_never_returns_another_projects_points(store: VectorStore) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    a_doc, b_doc = uuid.uuid4(), uuid.uuid4()
    store.upsert(_points(a, a_doc, [_angle(80), _angle(170)]))
    # B's points are closer to the query than any of A's, and more numerous than top_k.
    store.upsert(_points(b, b_doc, [_angle(i * 0.5) for i in range(60)]))

    hits = store.search(a, X_AXIS, top_k=10)
    assert [h.id for h in hits] == [point_id(a_doc, 0), point_id(a_doc, 1)]
    assert all(h.project_id == a for h in hits)
    assert store.search(uuid.uuid4(), X_AXIS, top_k=10) == []


def test_search_is_best_first_by_cosine_with_top_k_and_threshold(store: VectorStore) -> None:
    project, doc = uuid.uuid4(), uuid.uuid4()
    degrees = [50, 0, 30, 90, 10, 120, 20]
    # Lengths differ from point to point: the score is the cosine, not the dot product.
    store.upsert(_points(project, doc, [_angle(d, scale=1 + i) for i, d in enumerate(degrees)]))

    hits = store.search(project, [3.0, 0.0, 0.0, 0.0], top_k=3)
    assert [h.chunk_index for h in hits] == [1, 4, 6]  # 0°, 10°, 20°
    for hit in hits:
        expected = math.cos(math.radians(degrees[hit.chunk_index]))
        assert hit.score == pytest.approx(expected, abs=1e-5)
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert (hits[0].document_id, hits[0].file_name, hits[0].project_id) == (
        doc,
        "doc.txt",
        project,
    )

    everything = store.search(project, X_AXIS, top_k=100)
    assert [h.chunk_index for h in everything] == [1, 4, 6, 2, 0, 3, 5]
    assert [h.score for h in everything] == sorted((h.score for h in everything), reverse=True)

    # cos 30° = 0.866 passes 0.8, cos 50° = 0.643 does not.
    above = store.search(project, X_AXIS, top_k=100, score_threshold=0.8)
    assert [h.chunk_index for h in above] == [1, 4, 6, 2]
    assert store.search(project, X_AXIS, top_k=2, score_threshold=0.8) == above[:2]
    assert store.search(project, X_AXIS, top_k=0) == []


def test_count_and_point_ids(store: VectorStore) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    d1, d2, d3 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    store.upsert(_points(a, d1, [_angle(0)] * 2))
    store.upsert(_points(a, d2, [_angle(0)] * 3))
    store.upsert(_points(b, d3, [_angle(0)] * 4))

    assert store.count() == 9
    assert store.count(project_id=a) == 5
    assert store.count(document_id=d2) == 3
    assert store.count(project_id=b, document_id=d1) == 0
    every = {point_id(d, i) for d, n in ((d1, 2), (d2, 3), (d3, 4)) for i in range(n)}
    assert store.point_ids() == every
    assert store.point_ids(document_ids=[d1, d3]) == {
        point_id(d, i) for d, n in ((d1, 2), (d3, 4)) for i in range(n)
    }
    assert store.point_ids(document_ids=iter([d2])) == {point_id(d2, i) for i in range(3)}
    assert store.point_ids(document_ids=[]) == set()


def test_ping(store: VectorStore) -> None:
    store.ping()


def test_optimize_keeps_every_point_and_every_ranking(store: VectorStore) -> None:
    project, other = uuid.uuid4(), uuid.uuid4()
    doc, other_doc = uuid.uuid4(), uuid.uuid4()
    rng = random.Random(11)
    words = ["zebra", "okapi", "giraffe", "lion", "tapir", "quokka"]
    texts = [" ".join(rng.choices(words, k=rng.randint(1, 6))) for _ in range(40)]
    store.upsert(_points(project, doc, [_angle(4.5 * i) for i in range(40)], texts=texts))
    store.upsert(_points(other, other_doc, [_angle(1.0 * i) for i in range(10)], texts=texts[:10]))
    store.delete_document(doc, from_chunk_index=30)

    Ranked = list[tuple[uuid.UUID, float]]

    def snapshot() -> tuple[int, set[uuid.UUID], Ranked, Ranked, list[uuid.UUID]]:
        return (
            store.count(),
            store.point_ids(),
            [(h.id, round(h.score, 5)) for h in store.search(project, X_AXIS, top_k=10)],
            [(h.id, round(h.score, 5)) for h in store.search_lexical(project, "okapi", top_k=50)],
            [h.id for h in store.search_hybrid(project, X_AXIS, "tapir lion", top_k=10)],
        )

    before = snapshot()
    assert before[0] == 40 and len(before[3]) > 0
    store.optimize()
    store.optimize()  # nothing left to do: still harmless
    assert snapshot() == before


# -- lexical and hybrid search ---------------------------------------------------------------------


def _bm25(tf: int, length: int, df: int, n: int, query_count: int = 1) -> float:
    """One term's BM25 contribution, written out from the formula (Lucene's form)."""
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    return (
        query_count
        * idf
        * tf
        / (tf + lexical.K1 * (1 - lexical.B + lexical.B * length / lexical.AVG_LENGTH))
    )


LEXICAL_TEXTS = [
    "Resolvers cache answers for the time to live of each record.",
    "A resolver that finds no such domain answers NXDOMAIN; NXDOMAIN answers are cached too.",
    "Zone transfers copy every record of a zone to the secondary name servers.",
    "Mail exchangers are found through MX records.",
]


def test_lexical_search_scores_bm25_over_the_project(store: VectorStore) -> None:
    project, doc, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    store.upsert(_points(project, doc, [_angle(0)] * 4, texts=LEXICAL_TEXTS))

    hits = store.search_lexical(project, "nxdomain", top_k=10)
    assert [h.chunk_index for h in hits] == [1]
    # Chunk 1 has 12 terms after stop words ("a", "no", "such", "are", ... go); "nxdomain" twice.
    assert lexical.analyze(LEXICAL_TEXTS[1]).count("nxdomain") == 2
    length = len(lexical.analyze(LEXICAL_TEXTS[1]))
    expected = _bm25(tf=2, length=length, df=1, n=4)
    assert hits[0].score == pytest.approx(expected, rel=1e-4)
    assert (hits[0].lexical_rank, hits[0].lexical_score) == (1, hits[0].score)
    assert hits[0].dense_rank is None

    # Stemming: "resolvers" and "resolver" are one term, in chunks 0 and 1; "cached"/"cache" too.
    ranked_ = store.search_lexical(project, "resolver caching", top_k=10)
    assert {h.chunk_index for h in ranked_} == {0, 1}
    assert [h.lexical_rank for h in ranked_] == [1, 2]
    assert ranked_[0].score >= ranked_[1].score > 0

    # Only stop words: no terms, no hits. Unknown words: no hits. top_k 0: nothing.
    assert store.search_lexical(project, "the of and", top_k=10) == []
    assert store.search_lexical(project, "quasar", top_k=10) == []
    assert store.search_lexical(project, "nxdomain", top_k=0) == []
    # Another project with the same term changes neither the hits nor the IDF of this one.
    store.upsert(_points(uuid.uuid4(), other, [_angle(0)] * 3, texts=["nxdomain"] * 3))
    again = store.search_lexical(project, "nxdomain", top_k=10)
    assert [h.id for h in again] == [hits[0].id]
    assert again[0].score == pytest.approx(hits[0].score, rel=1e-4)
    assert store.search_lexical(uuid.uuid4(), "nxdomain", top_k=10) == []


def test_lexical_search_indexes_other_languages(store: VectorStore) -> None:
    project, doc = uuid.uuid4(), uuid.uuid4()
    texts = [
        "Все люди рождаются свободными и равными в своем достоинстве и правах.",  # noqa: RUF001
        "人人生而自由，在尊严和权利上一律平等。",  # noqa: RUF001
        "Todos los seres humanos nacen libres e iguales en dignidad y derechos.",
    ]
    store.upsert(_points(project, doc, [_angle(0)] * 3, texts=texts))
    assert [h.chunk_index for h in store.search_lexical(project, "достоинстве", top_k=5)] == [0]
    assert [h.chunk_index for h in store.search_lexical(project, "尊严", top_k=5)] == [1]
    assert [h.chunk_index for h in store.search_lexical(project, "derechos", top_k=5)] == [2]


def test_overwrite_and_deletes_leave_no_lexical_hits(store: VectorStore) -> None:
    project, doc, keep = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    store.upsert(_points(project, keep, [_angle(0)], texts=["zebra crossing"]))
    store.upsert(
        _points(project, doc, [_angle(0)] * 3, texts=["zebra one", "zebra two", "okapi three"])
    )
    assert len(store.search_lexical(project, "zebra", top_k=10)) == 3

    # Re-vectorized: same ids, new texts. The old terms are gone with the old vectors.
    store.upsert(_points(project, doc, [_angle(0)] * 3, texts=["giraffe", "zebra two", "okapi"]))
    assert {h.id for h in store.search_lexical(project, "zebra", top_k=10)} == {
        point_id(keep, 0),
        point_id(doc, 1),
    }
    assert store.search_lexical(project, "one", top_k=10) == []
    # The document shrank to one chunk: its tail's terms go with its tail.
    store.delete_document(doc, from_chunk_index=1)
    assert [h.id for h in store.search_lexical(project, "zebra", top_k=10)] == [point_id(keep, 0)]
    assert store.search_lexical(project, "okapi", top_k=10) == []
    assert len(store.search_lexical(project, "giraffe", top_k=10)) == 1
    store.delete_document(doc)
    assert store.search_lexical(project, "giraffe", top_k=10) == []
    store.delete_points([point_id(keep, 0)])
    assert store.search_lexical(project, "zebra", top_k=10) == []
    store.upsert(_points(project, keep, [_angle(0)], texts=["zebra crossing"]))
    store.delete_project(project)
    assert store.search_lexical(project, "zebra", top_k=10) == []
    assert store.search_hybrid(project, X_AXIS, "zebra", top_k=10) == []
    # Points that left do not count in the IDF either: a new lone chunk scores as in a new store.
    store.upsert(_points(project, doc, [_angle(0)], texts=["zebra"]))
    (hit,) = store.search_lexical(project, "zebra", top_k=10)
    assert hit.score == pytest.approx(_bm25(tf=1, length=1, df=1, n=1), rel=1e-4)
    assert store.points_without_lexical() == set()


def test_hybrid_fuses_both_rankings_with_rrf(store: VectorStore) -> None:
    project, doc = uuid.uuid4(), uuid.uuid4()
    # Dense order for the x axis: 0 (0°), 1 (20°), 2 (40°), 3 (60°), 4 (100°).
    # Lexical order for "okapi": 3 (okapi twice, short), 4 (okapi once); the others lack it.
    texts = ["zebra", "zebra giraffe", "lion", "okapi okapi", "okapi and a very long tail here"]
    store.upsert(_points(project, doc, [_angle(d) for d in (0, 20, 40, 60, 100)], texts=texts))
    hits = store.search_hybrid(project, X_AXIS, "okapi", top_k=5)
    k = RRF_K
    expected = {
        0: 1 / (k + 1),
        1: 1 / (k + 2),
        2: 1 / (k + 3),
        3: 1 / (k + 4) + 1 / (k + 1),
        4: 1 / (k + 5) + 1 / (k + 2),
    }
    assert [h.chunk_index for h in hits] == sorted(expected, key=lambda i: -expected[i])
    for h in hits:
        assert h.score == pytest.approx(expected[h.chunk_index])
    by_chunk = {h.chunk_index: h for h in hits}
    assert (by_chunk[3].dense_rank, by_chunk[3].lexical_rank) == (4, 1)
    assert (by_chunk[0].dense_rank, by_chunk[0].lexical_rank) == (1, None)
    assert by_chunk[0].dense_score == pytest.approx(1.0, abs=1e-5)
    assert by_chunk[3].dense_score == pytest.approx(math.cos(math.radians(60)), abs=1e-5)
    assert by_chunk[3].lexical_score is not None and by_chunk[3].lexical_score > 0
    assert by_chunk[0].lexical_score is None

    assert len(store.search_hybrid(project, X_AXIS, "okapi", top_k=2)) == 2
    # The threshold (cosine) thins the dense ranking only: chunk 4 (100°) stays, by its words.
    kept = store.search_hybrid(project, X_AXIS, "okapi", top_k=5, score_threshold=0.9)
    assert {h.chunk_index: h.dense_rank for h in kept} == {0: 1, 1: 2, 3: None, 4: None}
    # A query without terms is a dense search with RRF scores.
    plain = store.search_hybrid(project, X_AXIS, "the", top_k=3)
    assert [h.chunk_index for h in plain] == [0, 1, 2]
    assert store.search_hybrid(project, X_AXIS, "okapi", top_k=0) == []


def test_collections_from_before_the_lexical_index_are_upgraded(open_store: OpenStore) -> None:
    """A collection without the lexical side gets it; its old points are listed until rewritten."""
    project, doc = uuid.uuid4(), uuid.uuid4()
    old = _points(project, doc, [_angle(0), _angle(10)], texts=["zebra", "okapi"])
    store = open_store()
    if isinstance(store, EdgeStore):
        # docvec's Edge shards have had the lexical side since the first one; a shard without it
        # is refused (test_edge_refuses_a_shard_docvec_did_not_create).
        pytest.skip("no Qdrant Edge shard predates the lexical index")
    if isinstance(store, QdrantStore):
        from qdrant_client import models as qm

        client = store._client
        client.create_collection(
            COLLECTION, vectors_config=qm.VectorParams(size=DIM, distance=qm.Distance.COSINE)
        )
        client.upsert(
            COLLECTION,
            [
                qm.PointStruct(
                    id=str(p.id),
                    vector=list(p.vector),
                    payload={
                        "project_id": str(project),
                        "document_id": str(doc),
                        "chunk_index": p.chunk_index,
                        "file_name": p.file_name,
                    },
                )
                for p in old
            ],
        )
    else:
        import sqlalchemy as sa

        assert isinstance(store, PgVectorStore)
        with store._engine.begin() as conn:
            conn.execute(
                sa.text(
                    f'CREATE TABLE "{store.table}" (id uuid PRIMARY KEY, project_id uuid NOT NULL,'
                    " document_id uuid NOT NULL, chunk_index integer NOT NULL,"
                    f" file_name text NOT NULL, embedding vector({DIM}) NOT NULL)"
                )
            )
            for p in old:
                conn.execute(
                    sa.text(
                        f'INSERT INTO "{store.table}" VALUES (:id, :p, :d, :i, :f, '
                        "CAST(:e AS vector))"
                    ),
                    {
                        "id": p.id,
                        "p": project,
                        "d": doc,
                        "i": p.chunk_index,
                        "f": p.file_name,
                        "e": str(list(p.vector)).replace(" ", ""),
                    },
                )
    # Read before any start-up: no lexical side, no lexical hits, no error.
    assert store.points_without_lexical() == {p.id for p in old}
    assert store.search_lexical(project, "zebra", top_k=5) == []
    assert len(store.search_hybrid(project, X_AXIS, "zebra", top_k=5)) == 2

    store.ensure_collection(DIM)
    store.ensure_collection(DIM)
    assert store.count() == 2
    assert store.points_without_lexical() == {p.id for p in old}
    assert store.search_lexical(project, "zebra", top_k=5) == []
    store.upsert(old[:1])  # re-vectorized
    assert store.points_without_lexical() == {old[1].id}
    assert [h.id for h in store.search_lexical(project, "zebra", top_k=5)] == [old[0].id]


# -- the two stores agree ------------------------------------------------------------------------


def test_qdrant_edge_and_pgvector_rank_alike(
    tmp_path: Path, pgvector_url: str, fresh_pgvector_table: str
) -> None:
    dim, rng = 16, random.Random(20240611)
    projects = [uuid.uuid4() for _ in range(3)]
    documents = {p: [uuid.uuid4() for _ in range(5)] for p in projects}
    # Words with a skewed frequency, as in real text, so IDF and length both matter.
    vocabulary = [f"w{i}x" for i in range(120)]
    frequency = [1 / (i + 1) for i in range(120)]

    def text(words: int) -> str:
        return " ".join(rng.choices(vocabulary, weights=frequency, k=words))

    points = []
    for n in range(300):
        project = projects[n % 3]
        document = documents[project][n % 5]
        points.append(
            Point(
                id=point_id(document, n),
                vector=[rng.gauss(0, 1) for _ in range(dim)],
                project_id=project,
                document_id=document,
                chunk_index=n,
                file_name=f"{n}.txt",
                text=text(rng.randint(3, 40)),
            )
        )
    queries = [
        (projects[q % 3], [rng.gauss(0, 1) for _ in range(dim)], text(rng.randint(1, 4)))
        for q in range(20)
    ]

    # pgvector last: the reference the two Qdrant engines are compared with.
    stores: list[VectorStore] = [
        QdrantStore(collection=COLLECTION, path=tmp_path / "qdrant"),
        EdgeStore(collection=COLLECTION, path=tmp_path / "edge"),
        PgVectorStore(url=pgvector_url, table=fresh_pgvector_table),
    ]
    try:
        results = []
        for s in stores:
            s.ensure_collection(dim)
            s.upsert(points)
            s.delete_document(documents[projects[0]][0], from_chunk_index=150)
            results.append(
                (
                    s.count(),
                    [s.count(project_id=p) for p in projects],
                    s.point_ids(),
                    [s.search(p, v, top_k=5) for p, v, _ in queries],
                    [s.search_lexical(p, t, top_k=20) for p, _, t in queries],
                    [s.search_hybrid(p, v, t, top_k=10, candidates=20) for p, v, t in queries],
                )
            )
    finally:
        for s in stores:
            s.close()

    (p_count, p_per_project, p_ids, p_hits, p_lex, p_hyb) = results[-1]
    assert p_count < 300
    assert sum(len(r) for r in p_lex) > 100
    for q_count, q_per_project, q_ids, q_hits, q_lex, q_hyb in results[:-1]:
        assert q_count == p_count
        assert q_per_project == p_per_project
        assert q_ids == p_ids
        for q_result, p_result in zip(q_hits, p_hits, strict=True):
            assert len(q_result) == 5
            assert [h.id for h in q_result] == [h.id for h in p_result]
            for q_hit, p_hit in zip(q_result, p_result, strict=True):
                assert q_hit.score == pytest.approx(p_hit.score, abs=1e-4)
                assert (q_hit.document_id, q_hit.chunk_index, q_hit.file_name) == (
                    p_hit.document_id,
                    p_hit.chunk_index,
                    p_hit.file_name,
                )
        # BM25: the same scores in the same order; chunks with equal scores may swap places.
        for q_result, p_result in zip(q_lex, p_lex, strict=True):
            assert [h.score for h in q_result] == pytest.approx(
                [h.score for h in p_result], rel=1e-4
            )
            # (The last group may be cut by top_k at different members.)
            assert _by_score(q_result)[:-1] == _by_score(p_result)[:-1]
        # Hybrid: the same fusion wherever the lexical ranking had no ties to order differently.
        compared = 0
        for q_result, p_result, lex in zip(q_hyb, p_hyb, p_lex, strict=True):
            assert len(q_result) == len(p_result) == 10
            if all(len(group) == 1 for group in _by_score(lex)):
                compared += 1
                assert [h.id for h in q_result] == [h.id for h in p_result]
                assert [h.score for h in q_result] == pytest.approx([h.score for h in p_result])
                assert [(h.dense_rank, h.lexical_rank) for h in q_result] == [
                    (h.dense_rank, h.lexical_rank) for h in p_result
                ]
        assert compared >= 5


def _by_score(hits: Sequence[Hit]) -> list[set[uuid.UUID]]:
    """Ids grouped by equal score (to 4 significant digits), in ranking order."""
    groups: list[tuple[float, set[uuid.UUID]]] = []
    for h in hits:
        if groups and math.isclose(groups[-1][0], h.score, rel_tol=1e-4):
            groups[-1][1].add(h.id)
        else:
            groups.append((h.score, {h.id}))
    return [ids for _, ids in groups]


def test_pgvector_workers_starting_together_create_the_table_once(
    pgvector_url: str, fresh_pgvector_table: str
) -> None:
    stores = [PgVectorStore(url=pgvector_url, table=fresh_pgvector_table) for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def start(store: VectorStore) -> None:
        barrier.wait()
        try:
            store.ensure_collection(DIM)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in stores]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert errors == []
        stores[0].upsert(_points(uuid.uuid4(), uuid.uuid4(), [X_AXIS]))
        assert stores[3].count() == 1
    finally:
        for s in stores:
            s.close()


# -- Qdrant local mode: one process per folder ---------------------------------------------------

_HOLD_FOLDER = """
import sys, time
from pathlib import Path
from app.vectorstore.qdrant import QdrantStore
store = QdrantStore(collection="held", path=Path(sys.argv[1]))
store.ensure_collection(4)
print("ready", flush=True)
time.sleep(120)
"""


@contextlib.contextmanager
def _holder(script: str, *args: str) -> Iterator[None]:
    """Another process running ``script`` until it prints "ready"; SIGKILLed on exit (no close,
    no flush), so what it held is released only by its death."""
    holder = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        line = holder.stdout.readline()
        assert line.strip() == "ready", holder.stderr.read() if holder.stderr else line
        yield
    finally:
        holder.kill()
        holder.wait(timeout=30)
        for pipe in (holder.stdout, holder.stderr):
            if pipe is not None:
                pipe.close()


def test_second_process_on_a_local_folder_gets_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "qdrant"
    with _holder(_HOLD_FOLDER, str(folder)):
        with pytest.raises(VectorStoreLocked) as caught:
            QdrantStore(collection="held", path=folder)
        message = str(caught.value)
        assert str(folder) in message
        assert "DOCVEC_QDRANT_URL" in message and "DOCVEC_VECTOR_STORE=pgvector" in message
        # No lock traceback chained to it.
        assert caught.value.__cause__ is None and caught.value.__suppress_context__

    # The lock died with its process.
    store = QdrantStore(collection="held", path=folder)
    try:
        store.ensure_collection(4)
        assert store.count() == 0
    finally:
        store.close()


def test_second_client_in_one_process_is_refused_cleanly(tmp_path: Path) -> None:
    folder = tmp_path / "qdrant"
    first = QdrantStore(collection=COLLECTION, path=folder)
    try:
        # Objects that earlier tests left unclosed would warn at this test's collection: collect
        # them first, and count only warnings about this folder's files.
        gc.collect()
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            with pytest.raises(VectorStoreLocked, match="DOCVEC_QDRANT_URL"):
                QdrantStore(collection=COLLECTION, path=folder)
            gc.collect()  # the refused client's files must already be closed
        leaked = [
            str(w.message)
            for w in seen
            if issubclass(w.category, ResourceWarning)
            and (str(folder) in str(w.message) or "sqlite3.Connection" in str(w.message))
        ]
        assert not leaked, leaked
        first.ensure_collection(DIM)  # the first client keeps its lock and works
    finally:
        first.close()


# -- Qdrant Edge: one process per folder, durable, indexed on demand ------------------------------

_HOLD_EDGE = """
import sys, time, uuid
from pathlib import Path
from app.vectorstore import Point, point_id
from app.vectorstore.edge import EdgeStore
store = EdgeStore(collection="held", path=Path(sys.argv[1]))
store.ensure_collection(4)
doc = uuid.UUID(sys.argv[2])
store.upsert([Point(id=point_id(doc, 0), vector=[1.0, 0.0, 0.0, 0.0], project_id=doc,
                    document_id=doc, chunk_index=0, file_name="held.txt", text="held zebra")])
print("ready", flush=True)
time.sleep(120)
"""


def _assert_clear_lock_message(error: VectorStoreLocked, folder: Path) -> None:
    message = str(error)
    assert str(folder) in message and "Qdrant Edge" in message
    assert "DOCVEC_QDRANT_URL" in message and "DOCVEC_VECTOR_STORE=pgvector" in message
    # No engine traceback chained to it.
    assert error.__cause__ is None and error.__suppress_context__


def test_edge_second_process_is_refused_until_the_holder_dies(tmp_path: Path) -> None:
    folder, doc = tmp_path / "edge", uuid.uuid4()
    with _holder(_HOLD_EDGE, str(folder), str(doc)):
        with pytest.raises(VectorStoreLocked) as caught:
            EdgeStore(collection="held", path=folder)
        _assert_clear_lock_message(caught.value, folder / "held")

    # The lock died with its process, and the acknowledged upsert survived it (the WAL).
    store = EdgeStore(collection="held", path=folder)
    try:
        store.ensure_collection(4)
        assert store.point_ids() == {point_id(doc, 0)}
        (hit,) = store.search_lexical(doc, "zebra", top_k=5)
        assert hit.file_name == "held.txt"
    finally:
        store.close()


def test_edge_second_store_in_one_process_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "edge"
    # Made before the shard exists: it holds nothing yet, and finds nothing.
    early = EdgeStore(collection=COLLECTION, path=folder)
    assert early.count() == 0 and early.search(uuid.uuid4(), X_AXIS, top_k=3) == []
    first = EdgeStore(collection=COLLECTION, path=folder)
    try:
        first.ensure_collection(DIM)
        with pytest.raises(VectorStoreLocked) as caught:
            EdgeStore(collection=COLLECTION, path=folder)
        _assert_clear_lock_message(caught.value, folder / COLLECTION)
        # The early store now finds the shard, and the lock refuses it too.
        with pytest.raises(VectorStoreLocked):
            early.ensure_collection(DIM)
        with pytest.raises(VectorStoreLocked):
            early.count()
        project, doc = uuid.uuid4(), uuid.uuid4()
        first.upsert(_points(project, doc, [X_AXIS]))  # the first store keeps its lock and works
        assert first.count() == 1
    finally:
        first.close()
        early.close()
    again = EdgeStore(collection=COLLECTION, path=folder)  # released by close()
    try:
        assert again.count() == 1
    finally:
        again.close()


def test_edge_data_survives_close_and_reopen(tmp_path: Path) -> None:
    project, doc = uuid.uuid4(), uuid.uuid4()
    texts = LEXICAL_TEXTS
    store = EdgeStore(collection=COLLECTION, path=tmp_path)
    store.ensure_collection(DIM)
    store.upsert(_points(project, doc, [_angle(10 * i) for i in range(4)], texts=texts))
    store.delete_document(doc, from_chunk_index=3)
    dense = store.search(project, X_AXIS, top_k=5)
    lexical_hits = store.search_lexical(project, "resolver nxdomain", top_k=5)
    store.close()
    store.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        store.count()

    reopened = EdgeStore(collection=COLLECTION, path=tmp_path)
    try:
        # Readable before ensure_collection, as after a restart.
        assert reopened.point_ids() == {point_id(doc, i) for i in range(3)}
        assert reopened.search(project, X_AXIS, top_k=5) == dense
        assert reopened.search_lexical(project, "resolver nxdomain", top_k=5) == lexical_hits
        assert len(dense) == 3 and len(lexical_hits) == 2
        reopened.ensure_collection(DIM)
        with pytest.raises(DimensionMismatch, match=r"4-dim.*8-dim"):
            reopened.ensure_collection(8)
    finally:
        reopened.close()


def test_edge_optimize_builds_the_index_and_keeps_exact_results(tmp_path: Path) -> None:
    """A few hundred points, thresholds lowered so that optimize() really builds HNSW graphs and
    filtered searches use them; the top 5 stay the exact top 5."""
    dim, rng = 32, random.Random(3)
    projects = [uuid.uuid4() for _ in range(3)]
    docs = {p: uuid.uuid4() for p in projects}
    vectors = {p: [[rng.gauss(0, 1) for _ in range(dim)] for _ in range(150)] for p in projects}
    store = EdgeStore(
        collection=COLLECTION, path=tmp_path, indexing_threshold_kb=1, full_scan_threshold_kb=1
    )
    try:
        store.ensure_collection(dim)
        for p in projects:
            store.upsert(_points(p, docs[p], vectors[p]))
        queries = [(projects[q % 3], [rng.gauss(0, 1) for _ in range(dim)]) for q in range(30)]

        def cosine(u: Sequence[float], v: Sequence[float]) -> float:
            dot = sum(a * b for a, b in zip(u, v, strict=True))
            return dot / math.sqrt(sum(a * a for a in u) * sum(b * b for b in v))

        def exact_top5(project: uuid.UUID, query: Sequence[float]) -> list[uuid.UUID]:
            def similarity(i: int) -> float:
                return cosine(vectors[project][i], query)

            best = sorted(range(150), key=similarity, reverse=True)[:5]
            return [point_id(docs[project], i) for i in best]

        exact = [exact_top5(p, q) for p, q in queries]

        def top5() -> list[list[uuid.UUID]]:
            return [[h.id for h in store.search(p, q, top_k=5)] for p, q in queries]

        assert store._require_shard().info().indexed_vectors_count == 0
        before = top5()
        ids = store.point_ids()
        store.optimize()
        # The situation under test: every point is in an HNSW graph now.
        assert store._require_shard().info().indexed_vectors_count == 450
        after = top5()
        assert store.point_ids() == ids and len(ids) == 450
        assert before == exact
        assert after == exact
    finally:
        store.close()


def test_edge_refuses_a_shard_docvec_did_not_create(tmp_path: Path) -> None:
    import qdrant_edge as qe

    foreign = qe.EdgeShard.create(
        str(tmp_path / COLLECTION),
        qe.EdgeConfig(vectors={"text": qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Dot)}),
    )
    foreign.close()
    store = EdgeStore(collection=COLLECTION, path=tmp_path)
    try:
        with pytest.raises(DimensionMismatch, match="did not create"):
            store.ensure_collection(DIM)
    finally:
        store.close()


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "", "-x"])
def test_edge_collection_name_must_be_a_folder_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="folder name"):
        EdgeStore(collection=name, path=tmp_path)


# -- unreachable stores ----------------------------------------------------------------------------


def _closed_port() -> int:
    """A local TCP port with nothing listening (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_pgvector_is_unavailable() -> None:
    store = PgVectorStore(
        url=f"postgresql://postgres:secret-pw@127.0.0.1:{_closed_port()}/postgres",
        table="chunks",
        connect_timeout_s=2,
    )
    try:
        with pytest.raises(VectorStoreUnavailable) as caught:
            store.ping()
        assert caught.value.transient
        assert "secret-pw" not in str(caught.value)
        with pytest.raises(VectorStoreUnavailable):
            store.ensure_collection(DIM)
    finally:
        store.close()


def test_unreachable_qdrant_server_is_unavailable() -> None:
    store = QdrantStore(
        collection=COLLECTION, url=f"http://127.0.0.1:{_closed_port()}", timeout_s=2
    )
    try:
        with pytest.raises(VectorStoreUnavailable) as caught:
            store.ping()
        assert caught.value.transient
        with pytest.raises(VectorStoreUnavailable):
            store.search(uuid.uuid4(), X_AXIS, top_k=3)
    finally:
        store.close()


class _CannedQdrant(BaseHTTPRequestHandler):
    """Answers every request with the status, headers and body the test put on the server."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        status, headers, body = self.server.canned  # type: ignore[attr-defined]
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def canned_qdrant() -> Iterator[tuple[ThreadingHTTPServer, str]]:
    """A loopback HTTP server standing in for a Qdrant server in trouble."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CannedQdrant)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _error_body(message: str) -> bytes:
    return json.dumps({"status": {"error": message}, "time": 0.0}).encode()


def test_qdrant_server_errors_are_mapped(canned_qdrant: tuple[ThreadingHTTPServer, str]) -> None:
    server, url = canned_qdrant
    with pytest.warns(UserWarning, match="insecure connection"):  # the client's own caution
        store = QdrantStore(collection=COLLECTION, url=url, api_key="secret-key", timeout_s=5)
    project, doc = uuid.uuid4(), uuid.uuid4()
    try:
        server.canned = (503, {}, _error_body("Service Unavailable"))  # type: ignore[attr-defined]
        with pytest.raises(VectorStoreUnavailable, match="503") as caught:
            store.ping()
        assert "secret-key" not in str(caught.value)

        server.canned = (429, {"Retry-After": "7"}, _error_body("slow down"))  # type: ignore[attr-defined]
        with pytest.raises(VectorStoreUnavailable) as caught:
            store.upsert(_points(project, doc, [X_AXIS]))
        assert caught.value.retry_after_s == 7

        dimension_error = "Wrong input: Vector dimension error: expected dim: 384, got 768"
        server.canned = (400, {}, _error_body(dimension_error))  # type: ignore[attr-defined]
        with pytest.raises(DimensionMismatch, match=r"384-dim.*768-dim"):
            store.upsert(_points(project, doc, [X_AXIS]))

        # A request Qdrant refuses for another reason is a bug or a misconfiguration, not an
        # outage: it propagates as the client raised it.
        server.canned = (404, {}, _error_body("Collection `x` doesn't exist!"))  # type: ignore[attr-defined]
        with pytest.raises(UnexpectedResponse):
            store.count()
    finally:
        store.close()


# -- construction ----------------------------------------------------------------------------------


@pytest.mark.parametrize("table", ["chunks; DROP TABLE x", "1abc", "a-b", "x" * 49, ""])
def test_pgvector_table_name_must_be_an_identifier(table: str) -> None:
    with pytest.raises(ValueError, match="table name"):
        PgVectorStore(url="postgresql://postgres@127.0.0.1:1/postgres", table=table)


def test_factory_builds_the_configured_store(
    tmp_path: Path, pgvector_url: str, fresh_pgvector_table: str
) -> None:
    edge = create_vector_store(Settings(_env_file=None, data_dir=tmp_path))  # type: ignore[call-arg]
    try:
        assert isinstance(edge, EdgeStore) and edge.name == "qdrant-edge"
        edge.ensure_collection(DIM)
        assert (tmp_path / "edge" / "docvec_chunks" / "edge_config.json").is_file()
        assert not (tmp_path / "qdrant").exists()
    finally:
        edge.close()

    client = Settings(  # type: ignore[call-arg]
        _env_file=None, data_dir=tmp_path, qdrant_local_engine="client"
    )
    qdrant = create_vector_store(client)
    try:
        assert isinstance(qdrant, QdrantStore) and qdrant.local
        qdrant.ensure_collection(DIM)
        assert (tmp_path / "qdrant").is_dir()
    finally:
        qdrant.close()

    # A server URL wins over the embedded engine.
    server = Settings(  # type: ignore[call-arg]
        _env_file=None, data_dir=tmp_path / "s", qdrant_url=f"http://127.0.0.1:{_closed_port()}"
    )
    remote = create_vector_store(server)
    try:
        assert isinstance(remote, QdrantStore) and not remote.local
    finally:
        remote.close()
    assert not (tmp_path / "s").exists()

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        vector_store="pgvector",
        pgvector_url=pgvector_url.replace("postgresql+psycopg://", "postgresql://"),
        collection=fresh_pgvector_table,
    )
    pg = create_vector_store(settings)
    try:
        assert isinstance(pg, PgVectorStore) and pg.name == "pgvector"
        pg.ensure_collection(DIM)
        pg.ping()
    finally:
        pg.close()


# -- pgvector: filtered HNSW searches ----------------------------------------------------------


def test_pgvector_small_project_in_a_big_table_still_gets_top_k(
    pgvector_url: str, fresh_pgvector_table: str
) -> None:
    """HNSW before pgvector 0.8 filters after taking ``ef_search`` candidates from the whole table.

    When those are all another project's, the index yields no row of the project searched; the
    store must notice and answer exactly.
    """
    import sqlalchemy as sa

    dim, rng = 16, random.Random(5)
    query = [rng.gauss(0, 1) for _ in range(dim)]
    crowd, small = uuid.uuid4(), uuid.uuid4()
    crowd_doc, small_doc = uuid.uuid4(), uuid.uuid4()
    near = [[x + rng.gauss(0, 0.3) for x in query] for _ in range(1500)]
    far = [[rng.gauss(0, 1) for _ in range(dim)] for _ in range(20)]

    store = PgVectorStore(url=pgvector_url, table=fresh_pgvector_table)
    engine = sa.create_engine(pgvector_url)
    try:
        store.ensure_collection(dim)
        with engine.begin() as conn:
            # Without the project_id btree the planner has only the HNSW index to order by,
            # as it would choose with stale statistics.
            conn.execute(sa.text(f'DROP INDEX "{fresh_pgvector_table}_project_idx"'))
        store.upsert(_points(crowd, crowd_doc, near) + _points(small, small_doc, far))
        with engine.begin() as conn:
            conn.execute(sa.text(f'ANALYZE "{fresh_pgvector_table}"'))
            plan = "\n".join(
                conn.execute(
                    sa.text(
                        f'EXPLAIN SELECT id FROM "{fresh_pgvector_table}" WHERE project_id = :p '
                        "ORDER BY embedding <=> CAST(:q AS vector) LIMIT 5"
                    ),
                    {"p": small, "q": str(query).replace(" ", "")},
                ).scalars()
            )
        assert "hnsw" in plan  # the situation under test

        hits = store.search(small, query, top_k=5)
    finally:
        store.close()
        engine.dispose()

    def cosine(u: Sequence[float], v: Sequence[float]) -> float:
        dot = sum(a * b for a, b in zip(u, v, strict=True))
        return dot / math.sqrt(sum(a * a for a in u) * sum(b * b for b in v))

    expected = sorted(range(len(far)), key=lambda i: -cosine(far[i], query))[:5]
    assert [h.id for h in hits] == [point_id(small_doc, i) for i in expected]


# -- index versions: a second collection beside the first, dropped, aliased ------------------


def test_a_sibling_collection_of_another_size_lives_beside_and_drops_alone(
    store: VectorStore,
) -> None:
    project, doc = uuid.uuid4(), uuid.uuid4()
    store.upsert(_points(project, doc, [X_AXIS, _angle(30)]))
    # An index version's own collection: another vector size, on the same connection.
    other = store.sibling(store.collection + "_v2")
    try:
        other.ensure_collection(DIM * 2)
        other.upsert(
            [
                Point(
                    id=point_id(doc, 0, "v2"),
                    vector=[1.0] + [0.0] * (DIM * 2 - 1),
                    project_id=project,
                    document_id=doc,
                    chunk_index=0,
                    file_name="doc.txt",
                    text="",
                )
            ]
        )
        assert other.count() == 1 and store.count() == 2
        assert point_id(doc, 0, "v2") != point_id(doc, 0)  # row ids of both sets can coexist
        hits = other.search(project, [1.0] + [0.0] * (DIM * 2 - 1), top_k=5)
        assert [h.id for h in hits] == [point_id(doc, 0, "v2")]
        with pytest.raises(DimensionMismatch):
            other.upsert(_points(project, doc, [X_AXIS]))  # the first collection's size
        other.drop_collection()
        assert other.count() == 0 and other.search(project, [1.0] * (DIM * 2), top_k=5) == []
        other.drop_collection()  # a second drop is a no-op
        # The first collection is untouched, and still usable after its sibling closes.
    finally:
        other.drop_collection()
        other.close()
    assert store.count() == 2
    assert [h.id for h in store.search(project, X_AXIS, top_k=1)] == [point_id(doc, 0)]


def test_point_alias_switches_in_one_operation_where_the_store_has_aliases(
    store: VectorStore,
) -> None:
    project, doc = uuid.uuid4(), uuid.uuid4()
    store.upsert(_points(project, doc, [X_AXIS]))
    other = store.sibling(store.collection + "_v2")
    try:
        other.ensure_collection(DIM)
        if not store.point_alias("docvec_test_alias"):
            assert store.name in ("qdrant-edge", "pgvector")  # no aliases: SQL decides alone
            return
        assert isinstance(store, QdrantStore)
        client = store._client
        names = {a.alias_name: a.collection_name for a in client.get_aliases().aliases}
        assert names["docvec_test_alias"] == store.collection
        assert other.point_alias("docvec_test_alias")
        names = {a.alias_name: a.collection_name for a in client.get_aliases().aliases}
        assert names["docvec_test_alias"] == other.collection
    finally:
        other.drop_collection()
        other.close()


def test_vectors_reads_back_what_was_written(store: VectorStore) -> None:
    project, doc = uuid.uuid4(), uuid.uuid4()
    written = [_angle(10), _angle(50, scale=2.0), _angle(80)]
    texts = ["first chunk", "second chunk", "third chunk"]
    store.upsert(_points(project, doc, written, texts=texts))
    ids = [point_id(doc, i) for i in range(3)]
    got = store.vectors([*ids, uuid.uuid4()])  # an unknown id is left out
    assert set(got) == set(ids)
    # Each point says which text its vector embeds.
    assert [got[i].text_sha256 for i in ids] == [text_sha256(t) for t in texts]
    for i, v in enumerate(written):
        norm = math.sqrt(sum(x * x for x in v))
        # Stores may keep cosine vectors normalised: compare directions.
        back = got[ids[i]].vector
        back_norm = math.sqrt(sum(x * x for x in back))
        assert len(back) == DIM
        assert sum(a * b for a, b in zip(v, back, strict=True)) / (norm * back_norm) > 0.9999
    assert store.sibling(store.collection + "_none").vectors(ids) == {}
