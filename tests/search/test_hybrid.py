"""Hybrid search earns its place, through the whole pipeline and ``services.search``.

- A query that shares only a rare exact term with its chunk (a field name of the DNS header in
  RFC 1035) is found by lexical and hybrid search.
- A paraphrase that shares no word with its chunk is found by dense and hybrid search.
- Re-vectorizing and deleting leave no lexical hit behind, on every store.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import lexical, services
from app.config import ChunkingSettings, Settings
from app.db import migrate
from app.pipeline.chunk import Chunker
from app.pipeline.process import process_document
from app.runtime import Runtime
from app.vectorstore import VectorStore
from app.vectorstore.edge import EdgeStore
from app.vectorstore.pgvector import PgVectorStore
from app.vectorstore.qdrant import QdrantStore
from tests.search import beir_small

#: RFC 1035 §4.1.1, the header section format: QDCOUNT, ANCOUNT, RCODE ... (lines 1401-1560).
HEADER_LINES = (1400, 1560)


def _documents(corpus: Path, tmp: Path) -> dict[str, str]:
    docs = beir_small.build(corpus, tmp / "beir")
    lines = (corpus / "text/txt/rfc1035.txt").read_text(encoding="utf-8").splitlines()
    docs["rfc1035-header"] = "\n".join(lines[slice(*HEADER_LINES)])
    return docs


def _ingest(rt: Runtime, docs: dict[str, str], project: str = "search") -> dict[str, uuid.UUID]:
    ids = {}
    with rt.sessions() as s:
        proj = services.get_or_create_project(s, name=project)
        for name, text in docs.items():
            added = services.add_document(
                s, project=proj, storage=rt.storage, file_name=f"{name}.txt", pieces=[text.encode()]
            )
            ids[name] = added.document.id
        s.commit()
    for doc_id in ids.values():
        assert process_document(rt, doc_id).outcome == "succeeded"
    return ids


def _search(rt: Runtime, query: str, mode: str, top_k: int = 5) -> list[services.SearchResult]:
    with rt.sessions() as s:
        project = services.find_project(s, "search")
        return services.search(
            s,
            project=project,
            query=query,
            provider=rt.provider,
            store=rt.vector_store,
            top_k=top_k,
            mode=mode,  # type: ignore[arg-type]
        )


@pytest.fixture(scope="module")
def corpus_rt(
    corpus: Path, local_provider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Runtime]:  # type: ignore[no-untyped-def]
    """The beir_small documents and the RFC 1035 header section, in the embedded defaults."""
    tmp = tmp_path_factory.mktemp("hybrid")
    settings = Settings(_env_file=None, data_dir=tmp / "data")  # type: ignore[call-arg]
    migrate.upgrade(settings.sqlalchemy_url)
    rt = Runtime(settings, provider=local_provider)
    _ingest(rt, _documents(corpus, tmp))
    yield rt
    rt.close()


def test_a_rare_identifier_is_found_by_lexical_and_hybrid(corpus_rt: Runtime) -> None:
    query = "QDCOUNT"
    lexical_hits = _search(corpus_rt, query, "lexical")
    assert lexical_hits and all("QDCOUNT" in h.text for h in lexical_hits)
    assert lexical_hits[0].file_name == "rfc1035-header.txt"
    best = (lexical_hits[0].document_id, lexical_hits[0].chunk_index)
    hybrid_hits = _search(corpus_rt, query, "hybrid", top_k=3)
    found = [h for h in hybrid_hits if (h.document_id, h.chunk_index) == best]
    assert found and found[0].lexical_rank == 1


#: Paraphrases sharing no word with the chunk they describe, and that chunk's file. The first
#: shares words with two other chunks, so lexical search finds only those; the second shares
#: words with none.
PARAPHRASES = [
    ("waiting on slow input without freezing", "md-fastapi__async.txt"),
    ("becoming proficient at the shell prompt", "md-the-art-of-command-line__README.txt"),
]


@pytest.mark.parametrize(("query", "file_name"), PARAPHRASES)
def test_a_paraphrase_without_shared_words_is_found_by_dense_and_hybrid(
    corpus_rt: Runtime, query: str, file_name: str
) -> None:
    target = _search(corpus_rt, query, "dense", top_k=1)[0]
    assert target.file_name == file_name
    # No word of the query is in the chunk, so BM25 cannot find it ...
    assert not set(lexical.analyze(query)) & set(lexical.analyze(target.text))
    key = (target.document_id, target.chunk_index)
    lexical_hits = _search(corpus_rt, query, "lexical", top_k=100)
    assert key not in {(h.document_id, h.chunk_index) for h in lexical_hits}
    # ... and hybrid still ranks it near the top, on the strength of its dense rank alone.
    hybrid_hits = _search(corpus_rt, query, "hybrid", top_k=3)
    found = [h for h in hybrid_hits if (h.document_id, h.chunk_index) == key]
    assert found and found[0].dense_rank == 1 and found[0].lexical_rank is None


@pytest.fixture(params=["qdrant", "edge", "pgvector"])
def store_rt(request: pytest.FixtureRequest, tmp_path: Path, local_provider) -> Iterator[Runtime]:  # type: ignore[no-untyped-def]
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")  # type: ignore[call-arg]
    migrate.upgrade(settings.sqlalchemy_url)
    if request.param == "qdrant":
        store: VectorStore = QdrantStore(collection="chunks", path=tmp_path / "qdrant")
    elif request.param == "edge":
        store = EdgeStore(collection="chunks", path=tmp_path / "edge")
    else:
        store = PgVectorStore(
            url=request.getfixturevalue("pgvector_url"),
            table=request.getfixturevalue("fresh_pgvector_table"),
        )
    rt = Runtime(settings, provider=local_provider, vector_store=store)
    yield rt
    rt.close()


def test_revectorize_and_delete_leave_no_lexical_hits(store_rt: Runtime, corpus: Path) -> None:
    rt, word = store_rt, "ARCOUNT"  # only in the header section
    docs = _documents(corpus, rt.settings.data_dir)
    ids = _ingest(rt, {k: docs[k] for k in ("rfc1035-header", "rfc1035-45", "rfc3986-30")})
    header, store = ids["rfc1035-header"], rt.vector_store
    with rt.sessions() as s:
        project_id = services.find_project(s, "search").id
    before = store.search_lexical(project_id, word, top_k=50)
    assert before and {h.document_id for h in before} == {header}
    chunks_before = store.count(document_id=header)

    # Re-vectorized with chunks three times as large: fewer chunks, other texts.
    rt.chunker = Chunker.from_settings(ChunkingSettings(chunk_size=3000, chunk_overlap=100))
    with rt.sessions() as s:
        generation = services.request_revectorize(s, document=services.get_document(s, header))
        s.commit()
    assert process_document(rt, header, generation).outcome == "succeeded"
    chunks_after = store.count(document_id=header)
    assert 0 < chunks_after < chunks_before
    after = store.search_lexical(project_id, word, top_k=50)
    assert after and all(h.chunk_index < chunks_after for h in after)
    # Every lexical hit is a current chunk, whose text in SQL has the word.
    results = _search(rt, word, "lexical", top_k=50)
    assert len(results) == len(after) and all(word in r.text for r in results)
    with rt.sessions() as s:
        assert services.reconcile(s, store=store).clean

    # Deleted: no lexical hit of it is left in the store, not merely hidden by SQL.
    with rt.sessions() as s:
        services.delete_document(
            s, document=services.get_document(s, header), stores=[store], storage=rt.storage
        )
    assert store.search_lexical(project_id, word, top_k=50) == []
    fused = store.search_hybrid(project_id, rt.provider.embed_query(word), word, top_k=50)
    assert fused and header not in {h.document_id for h in fused}
    assert all(h.lexical_rank is None for h in fused)
    with rt.sessions() as s:
        assert services.reconcile(s, store=store).clean
