"""The pipeline function end to end, in-process: SQLite + Qdrant Edge + the real model.

Checks DESIGN §2 invariants 1-3 on real documents: vector store first then SQL, deterministic point
ids (re-runs overwrite), stale tails deleted, and superseded runs writing nothing.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from app import services
from app.config import ChunkingSettings
from app.db.models import Document, DocumentChunk, VectorizationAttempt
from app.pipeline.chunk import Chunker
from app.pipeline.process import process_document
from app.runtime import Runtime
from app.vectorstore import point_id
from tests.pipeline.helpers import add_file


def _chunk_ids(rt: Runtime, doc_id: uuid.UUID) -> set[uuid.UUID]:
    with rt.sessions() as s:
        return set(s.scalars(select(DocumentChunk.id).where(DocumentChunk.document_id == doc_id)))


def test_pdf_vectorizes_with_pages_and_consistent_points(rt: Runtime, corpus: Path) -> None:
    doc_id = add_file(rt, corpus / "pdf/text/pdflatex-4-pages.pdf")
    result = process_document(rt, doc_id)
    assert result.outcome == "succeeded", result.error
    with rt.sessions() as s:
        doc = s.get(Document, doc_id)
        assert doc is not None
        assert doc.status == "vectorized" and doc.vectorized_at is not None
        assert doc.page_count == 4
        assert doc.chunk_count == result.chunks > 0
        assert doc.embedding_model == "local:all-MiniLM-L6-v2"
        chunks = s.scalars(
            select(DocumentChunk)
            .where(DocumentChunk.document_id == doc_id)
            .order_by(DocumentChunk.chunk_index)
        ).all()
        pages = [c.page for c in chunks]
        assert pages[0] == 1 and pages[-1] == 4 and pages == sorted(pages)
        assert [c.chunk_index for c in chunks] == list(range(len(chunks)))
        assert all(c.id == point_id(doc_id, c.chunk_index) for c in chunks)
        attempt = s.scalar(
            select(VectorizationAttempt).where(VectorizationAttempt.document_id == doc_id)
        )
        assert attempt is not None and attempt.outcome == "succeeded"
        assert set(attempt.timings_ms or {}) >= {"extract", "chunk", "embed", "upsert", "commit"}
    store = rt.vector_store
    assert store.point_ids(document_ids=[doc_id]) == _chunk_ids(rt, doc_id)


def test_revectorize_twice_same_points_no_duplicates(rt: Runtime, corpus: Path) -> None:
    doc_id = add_file(rt, corpus / "text/md/en/fastapi__features.md")
    assert process_document(rt, doc_id).outcome == "succeeded"
    first_ids = rt.vector_store.point_ids(document_ids=[doc_id])
    total = rt.vector_store.count()
    for _ in range(2):
        with rt.sessions() as s:
            gen = services.request_revectorize(s, document=services.get_document(s, doc_id))
            s.commit()
        assert process_document(rt, doc_id, gen).outcome == "succeeded"
        assert rt.vector_store.point_ids(document_ids=[doc_id]) == first_ids
        assert rt.vector_store.count() == total
        assert _chunk_ids(rt, doc_id) == first_ids


def test_shorter_revectorize_deletes_stale_points(rt: Runtime, corpus: Path) -> None:
    doc_id = add_file(rt, corpus / "text/md/en/fastapi__features.md")
    assert process_document(rt, doc_id).outcome == "succeeded"
    before = rt.vector_store.count(document_id=doc_id)
    # Bigger chunks → fewer of them: the tail's points must go.
    rt.chunker = Chunker.from_settings(ChunkingSettings(chunk_size=3000, chunk_overlap=100))
    with rt.sessions() as s:
        gen = services.request_revectorize(s, document=services.get_document(s, doc_id))
        s.commit()
    assert process_document(rt, doc_id, gen).outcome == "succeeded"
    after = rt.vector_store.count(document_id=doc_id)
    assert 0 < after < before
    assert rt.vector_store.point_ids(document_ids=[doc_id]) == _chunk_ids(rt, doc_id)


def test_superseded_run_writes_nothing(rt: Runtime, corpus: Path) -> None:
    doc_id = add_file(rt, corpus / "text/md/en/fastapi__features.md")
    with rt.sessions() as s:
        new_gen = services.request_revectorize(s, document=services.get_document(s, doc_id))
        s.commit()
    # A job enqueued for generation 1 arrives after the re-vectorize request: it must skip.
    assert process_document(rt, doc_id, new_gen - 1).outcome == "skipped"
    assert rt.vector_store.count(document_id=doc_id) == 0
    assert process_document(rt, doc_id, new_gen).outcome == "succeeded"
    # A redelivered duplicate of the finished job does nothing.
    assert process_document(rt, doc_id, new_gen).outcome == "skipped"


@pytest.mark.parametrize(
    ("rel", "stage", "needle"),
    [
        ("pdf/broken/truncated-pdflatex-4-pages.pdf", "extract", "pdf"),
        ("pdf/encrypted/password.pdf", "extract", "encrypted"),
        ("docx/broken/strict.docx", "extract", "docx"),
        ("text/edge_cases/empty.txt", "extract", "empty"),
    ],
)
def test_bad_documents_fail_with_reason_and_others_carry_on(
    rt: Runtime, corpus: Path, rel: str, stage: str, needle: str
) -> None:
    bad = add_file(rt, corpus / rel)
    good = add_file(rt, corpus / "pdf/text/crazyones-pdfa.pdf")
    result = process_document(rt, bad)
    assert result.outcome == "failed"
    with rt.sessions() as s:
        doc = s.get(Document, bad)
        assert doc is not None and doc.status == "failed"
        assert doc.failed_stage == stage
        assert needle in (doc.error or "").lower()
    assert rt.vector_store.count(document_id=bad) == 0
    assert process_document(rt, good).outcome == "succeeded"


def test_missing_stored_file_fails_permanently(rt: Runtime, corpus: Path, tmp_path: Path) -> None:
    src = tmp_path / "note.txt"
    src.write_text("A short note about vector databases and chunking. " * 5)
    doc_id = add_file(rt, src)
    shutil.rmtree(rt.settings.files_dir)
    result = process_document(rt, doc_id)
    assert result.outcome == "failed" and result.stage == "read"
    assert "missing" in (result.error or "")


def test_same_bytes_twice_is_one_document(rt: Runtime, corpus: Path, tmp_path: Path) -> None:
    path = corpus / "text/txt/rfc3986.txt"
    copy = tmp_path / "renamed.txt"
    copy.write_bytes(path.read_bytes())
    assert add_file(rt, path) == add_file(rt, copy)
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Document)) == 1


def _attempt_usage(rt: Runtime, doc_id: uuid.UUID) -> dict[str, int]:
    with rt.sessions() as s:
        attempt = s.scalars(
            select(VectorizationAttempt)
            .where(VectorizationAttempt.document_id == doc_id)
            .order_by(VectorizationAttempt.started_at.desc())
        ).first()
        assert attempt is not None and attempt.usage is not None
        return dict(attempt.usage)


def test_chunks_longer_than_the_model_window_are_reported(
    rt: Runtime, corpus: Path, model_tokens: tuple[Path, Any]
) -> None:
    path, tok = model_tokens
    tuned = ChunkingSettings(
        unit="model_tokens", chunk_size=254, chunk_overlap=50, min_chunk_size=25
    )

    # Chunks of 3,000 characters are far past all-MiniLM-L6-v2's 256 word pieces: each one the
    # model cuts is counted on the attempt, as many as an independent count finds.
    rt.chunker = Chunker.from_settings(
        ChunkingSettings(chunk_size=3000, chunk_overlap=100, min_chunk_size=100)
    )
    doc_id = add_file(rt, corpus / "text/txt/rfc3986.txt")
    assert process_document(rt, doc_id).outcome == "succeeded"
    with rt.sessions() as s:
        texts = s.scalars(
            select(DocumentChunk.content).where(DocumentChunk.document_id == doc_id)
        ).all()
    over = sum(1 for t in texts if len(tok.encode(t.strip()).ids) > 256)
    assert over > 0
    usage = _attempt_usage(rt, doc_id)
    assert usage["truncated"] == over and usage["inputs"] == len(texts)

    # Sized in the model's own tokens, nothing is cut.
    rt.chunker = Chunker.from_settings(tuned, tokenizer_file=path)
    with rt.sessions() as s:
        services.request_revectorize(s, document=services.get_document(s, doc_id))
        s.commit()
    assert process_document(rt, doc_id).outcome == "succeeded"
    usage = _attempt_usage(rt, doc_id)
    assert usage["truncated"] == 0 and usage["inputs"] > len(texts)
