"""The overlapped in-process ingest (app/pipeline/ingest.py) and shared embedding batches.

Real documents, SQLite, Qdrant Edge and the real model, as in test_process.py. What is
checked: results come back in order, one per document; small documents share one embedding call
yet each gets exactly its own vectors, chunk rows and points; a bad document in the middle fails
alone; an early stop of the consumer leaves nothing half-written.
"""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from app.db.models import Document, DocumentChunk, VectorizationAttempt
from app.pipeline.ingest import process_many
from app.pipeline.process import PreparedDocument, complete_documents, prepare_document
from app.runtime import Runtime
from tests.pipeline.helpers import add_file

SENTENCES = [
    "Raft elects a leader by randomized timeouts and replicates a log to its followers.",
    "Sourdough bread rises slowly because wild yeast ferments the dough for many hours.",
    "The Treaty of Westphalia ended the Thirty Years' War in 1648.",
    "A B-tree keeps its keys sorted and its leaves at the same depth.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "The offside rule in football stops attackers from waiting behind the defenders.",
    "Mitochondria produce most of a cell's supply of adenosine triphosphate.",
    "Haiku are short poems of three lines with five, seven and five syllables.",
]


def _small_files(tmp_path: Path) -> list[Path]:
    paths = []
    for i, text in enumerate(SENTENCES):
        p = tmp_path / f"note-{i}.txt"
        p.write_text(text + "\n")
        paths.append(p)
    return paths


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def _stored_vector(rt: Runtime, doc_id: uuid.UUID, text: str) -> list[float]:
    """The vector the store holds for the document's only chunk: its own top dense hit."""
    with rt.sessions() as s:
        project_id = s.scalar(select(Document.project_id).where(Document.id == doc_id))
    assert project_id is not None
    query = rt.provider.embed_documents([text])[0]
    hits = rt.vector_store.search(project_id, query, top_k=1)
    assert hits and hits[0].document_id == doc_id
    assert hits[0].score == pytest.approx(1.0, abs=1e-3)  # the same vector as embedding it alone
    return query


def test_small_documents_share_one_call_and_keep_their_own_vectors(
    rt: Runtime, tmp_path: Path
) -> None:
    ids = [add_file(rt, p) for p in _small_files(tmp_path)]
    prepared = [prepare_document(rt, d) for d in ids]
    assert all(isinstance(p, PreparedDocument) for p in prepared)
    batches: list[int] = []
    results = complete_documents(
        rt,
        [p for p in prepared if isinstance(p, PreparedDocument)],
        on_chunks=batches.append,
    )
    # One batch for all eight one-chunk documents (batch_size 32): the batch was shared.
    assert batches == [len(SENTENCES)]
    assert [r.document_id for r in results] == ids
    assert all(r.outcome == "succeeded" and r.chunks == 1 for r in results)
    for doc_id, text in zip(ids, SENTENCES, strict=True):
        _stored_vector(rt, doc_id, text)
    with rt.sessions() as s:
        for doc_id, text in zip(ids, SENTENCES, strict=True):
            rows = s.scalars(select(DocumentChunk).where(DocumentChunk.document_id == doc_id)).all()
            assert [r.content.strip() for r in rows] == [text]
            attempt = s.scalars(
                select(VectorizationAttempt).where(VectorizationAttempt.document_id == doc_id)
            ).one()
            # Each document is charged its own inputs of the shared call.
            assert attempt.usage is not None and attempt.usage["inputs"] == 1
            assert attempt.outcome == "succeeded"
    assert rt.vector_store.count() == len(SENTENCES)


def test_process_many_in_order_with_a_bad_document_in_the_middle(
    rt: Runtime, tmp_path: Path, corpus: Path
) -> None:
    small = _small_files(tmp_path)
    files = [
        *small[:3],
        corpus / "pdf/encrypted/password.pdf",
        corpus / "pdf/text/crazyones-pdfa.pdf",
        *small[3:],
    ]
    ids = [add_file(rt, p) for p in files]
    seen: list[int] = []
    results = list(process_many(rt, [(d, None) for d in ids], on_chunks=seen.append))

    assert [r.document_id for r in results] == ids
    outcomes = {f.name: r.outcome for f, r in zip(files, results, strict=True)}
    assert outcomes.pop("password.pdf") == "failed"
    assert set(outcomes.values()) == {"succeeded"}
    bad = results[3]
    assert bad.stage == "extract" and "encrypted" in (bad.error or "").lower()

    total = sum(r.chunks for r in results)
    assert sum(seen) == total  # every chunk embedded exactly once
    with rt.sessions() as s:
        for doc_id, r in zip(ids, results, strict=True):
            doc = s.get(Document, doc_id)
            assert doc is not None
            rows = set(
                s.scalars(select(DocumentChunk.id).where(DocumentChunk.document_id == doc_id))
            )
            assert len(rows) == doc.chunk_count == r.chunks
            assert rt.vector_store.point_ids(document_ids=[doc_id]) == rows
    assert rt.vector_store.count() == total
    for doc_id, text in zip(ids[:3] + ids[5:], SENTENCES, strict=True):
        stored = _stored_vector(rt, doc_id, text)
        assert _cosine(stored, rt.provider.embed_documents([text])[0]) > 0.999


def test_stopping_early_leaves_no_half_written_document(rt: Runtime, tmp_path: Path) -> None:
    # More one-chunk documents than one batch (32) plus one batch of look-ahead can hold, so
    # some are never reached when the consumer stops after the first result.
    paths = []
    for i in range(80):
        p = tmp_path / f"n{i}.txt"
        p.write_text(f"Note {i}. {SENTENCES[i % len(SENTENCES)]}\n")
        paths.append(p)
    ids = [add_file(rt, p) for p in paths]
    results = process_many(rt, [(d, None) for d in ids], lookahead_batches=1)
    first = next(results)
    results.close()  # the consumer stops: the preparer finishes its document and exits
    assert first.outcome == "succeeded"
    with rt.sessions() as s:
        docs = {d.id: d for d in s.scalars(select(Document))}
        for doc_id in ids:
            doc = docs[doc_id]
            points = rt.vector_store.point_ids(document_ids=[doc_id])
            rows = set(
                s.scalars(select(DocumentChunk.id).where(DocumentChunk.document_id == doc_id))
            )
            # Written documents are whole; the others have neither rows nor points.
            assert points == rows
            assert (doc.status == "vectorized") == bool(rows)
    # The documents left behind are taken up again by the next run.
    rest = [(d, None) for d in ids if docs[d].status != "vectorized"]
    assert rest, "the consumer stopped after one result; others must remain"
    again = list(process_many(rt, rest))
    assert {r.outcome for r in again} == {"succeeded"}


def test_a_failed_shared_call_is_recorded_on_every_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.config import EmbeddingSettings, Settings
    from app.db import migrate
    from tests.embeddings.fakes import FakeOpenAI, openai_error

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-shared-call")
    with FakeOpenAI() as fake:
        # Two tries (max_attempts=2), both 500: the call fails after one retry.
        fake.push(openai_error(500, "server error"), openai_error(500, "server error"))
        embedding = EmbeddingSettings(
            provider="openai", base_url=fake.url + "/v1", dimensions=16, max_attempts=2
        )
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, data_dir=tmp_path / "data", embedding=embedding
        )
        migrate.upgrade(settings.sqlalchemy_url)
        rt = Runtime(settings)
        try:
            ids = [add_file(rt, p) for p in _small_files(tmp_path)[:2]]
            prepared = [prepare_document(rt, d) for d in ids]
            docs = [p for p in prepared if isinstance(p, PreparedDocument)]
            results = complete_documents(rt, docs)
        finally:
            rt.close()
        assert len(fake.embed_requests) == 2
    assert [r.outcome for r in results] == ["failed", "failed"]
    assert {r.stage for r in results} == {"embed"}
    with rt.sessions() as s:
        usages = [
            s.scalars(
                select(VectorizationAttempt.usage).where(VectorizationAttempt.document_id == d)
            ).one()
            for d in ids
        ]
    # Each attempt carries its share of the failed call (two requests, one of them a retry),
    # and the shares add up to the call.
    assert [(u or {}).get("requests") for u in usages] == [1, 1]
    assert sum((u or {}).get("retries") or 0 for u in usages) == 1
    assert [(u or {}).get("inputs") for u in usages] == [0, 0]


def test_a_run_of_a_replaced_version_that_fails_leaves_the_new_run_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run prepared for a version of the file that was replaced meanwhile (README, "New
    versions of a document"), whose embedding call then fails for good, ends ``superseded``:
    it neither marks the document failed while the new version's run holds it, nor retries."""
    from app import services
    from app.config import EmbeddingSettings, Settings
    from app.db import migrate
    from tests.embeddings.fakes import FakeOpenAI, openai_error

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-replaced-run")
    with FakeOpenAI() as fake:
        fake.push(openai_error(400, "bad request"))
        embedding = EmbeddingSettings(
            provider="openai", base_url=fake.url + "/v1", dimensions=16, max_attempts=1
        )
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, data_dir=tmp_path / "data", embedding=embedding
        )
        migrate.upgrade(settings.sqlalchemy_url)
        rt = Runtime(settings)
        try:
            (path,) = _small_files(tmp_path)[:1]
            doc_id = add_file(rt, path)
            old = prepare_document(rt, doc_id, 1)
            assert isinstance(old, PreparedDocument)
            with rt.sessions() as s:
                replaced = services.replace_document(
                    s,
                    document=services.get_document(s, doc_id, for_update=True),
                    storage=rt.storage,
                    pieces=[b"The second version of this note says something else.\n"],
                )
                s.commit()
                services.delete_unreferenced_files(s, rt.storage, [replaced.old_uri or ""])
            assert replaced.jobs == [(doc_id, 2)]
            new = prepare_document(rt, doc_id, 2)  # claims it: processing
            assert isinstance(new, PreparedDocument)
            (stale,) = complete_documents(rt, [old])  # its embedding call gets the 400
            with rt.sessions() as s:
                held = s.get(Document, doc_id)
                assert held is not None and (held.status, held.error) == ("processing", None)
            (done,) = complete_documents(rt, [new])
        finally:
            rt.close()
    assert stale.outcome == "superseded" and done.outcome == "succeeded"
    with rt.sessions() as s:
        doc = s.get(Document, doc_id)
        assert doc is not None and doc.status == "vectorized" and doc.generation == 2
        outcomes = s.scalars(
            select(VectorizationAttempt.outcome)
            .where(VectorizationAttempt.document_id == doc_id)
            .order_by(VectorizationAttempt.generation)
        ).all()
        texts = s.scalars(select(DocumentChunk.content)).all()
    assert outcomes == ["superseded", "succeeded"]
    assert texts == ["The second version of this note says something else."]
