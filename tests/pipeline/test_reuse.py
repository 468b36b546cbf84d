"""Each distinct chunk text is embedded once per index version (app/pipeline/reuse.py): an
unchanged document re-vectorized costs no embedding, an edited copy only its changed chunks,
repeated texts one embedding, and nothing is reused across index versions.

Through the real OpenAI SDK against a loopback server that counts the texts it embeds."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from app import indexes, services
from app.config import ChunkingSettings, EmbeddingSettings, Settings
from app.db import migrate
from app.db.models import DocumentChunk, VectorizationAttempt
from app.pipeline.build import run_build
from app.pipeline.ingest import process_many
from app.pipeline.process import process_document
from app.runtime import Runtime
from tests.embeddings.fakes import FakeOpenAI

KEY_ENV = "DOCVEC_TEST_REUSE_KEY"
PARAGRAPHS = [
    f"Paragraph {i}: " + " ".join(f"w{i}x{j}" for j in range(25)) + "." for i in range(12)
]


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def rt(tmp_path: Path, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    monkeypatch.setenv(KEY_ENV, "sk-test-reuse")
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=tmp_path / "data",
        embedding=EmbeddingSettings(
            provider="openai",
            model="fake-a",
            dimensions=16,
            base_url=fake.url + "/v1",
            api_key_env=KEY_ENV,
        ),
        chunking=ChunkingSettings(chunk_size=300, chunk_overlap=0, min_chunk_size=16),
    )
    migrate.upgrade(settings.sqlalchemy_url)
    runtime = Runtime(settings)
    yield runtime
    runtime.close()


def _embedded(fake: FakeOpenAI) -> list[str]:
    """Every text the server was asked to embed, in order."""
    out: list[str] = []
    for r in fake.embed_requests:
        body = r.body or {}
        texts = body.get("input")
        out += [texts] if isinstance(texts, str) else list(texts or [])
    return out


def _add(rt: Runtime, name: str, text: str) -> uuid.UUID:
    with rt.sessions() as s:
        project = services.get_or_create_project(s, name="p")
        doc = services.add_document(
            s, project=project, storage=rt.storage, file_name=name, pieces=[text.encode()]
        ).document
        s.commit()
        return doc.id


def _usage(rt: Runtime, doc_id: uuid.UUID) -> dict[str, int]:
    with rt.sessions() as s:
        row = s.scalars(
            select(VectorizationAttempt)
            .where(VectorizationAttempt.document_id == doc_id)
            .order_by(VectorizationAttempt.started_at.desc())
        ).first()
        assert row is not None and row.usage is not None
        return dict(row.usage)


def test_an_unchanged_document_re_vectorized_embeds_nothing(rt: Runtime, fake: FakeOpenAI) -> None:
    doc_id = _add(rt, "a.txt", "\n\n".join(PARAGRAPHS))
    assert process_document(rt, doc_id).outcome == "succeeded"
    first = len(_embedded(fake))
    assert first == len(PARAGRAPHS)  # one chunk per paragraph at these sizes
    with rt.sessions() as s:
        generation = services.request_revectorize(s, document=services.get_document(s, doc_id))
        s.commit()
    result = process_document(rt, doc_id, generation)
    assert result.outcome == "succeeded" and result.chunks == len(PARAGRAPHS)
    assert len(_embedded(fake)) == first  # not one more text sent
    usage = _usage(rt, doc_id)
    assert usage["inputs"] == 0 and usage["reused"] == len(PARAGRAPHS)
    hits = rt.search(rt.sessions(), project=_project(rt), query="w7x3 w7x4", mode="dense")
    assert hits[0].text.startswith("Paragraph 7")


def _project(rt: Runtime) -> services.Project:
    with rt.sessions() as s:
        project = services.find_project(s, "p")
        s.expunge(project)
        return project


def test_an_edited_copy_embeds_only_its_changed_chunks(rt: Runtime, fake: FakeOpenAI) -> None:
    original = _add(rt, "v1.txt", "\n\n".join(PARAGRAPHS))
    assert process_document(rt, original).outcome == "succeeded"
    before = len(_embedded(fake))
    edited = list(PARAGRAPHS)
    edited[6] = "Paragraph 6 was rewritten: the committee changed its mind about the budget."
    copy = _add(rt, "v2.txt", "\n\n".join(edited))
    result = process_document(rt, copy)
    assert result.outcome == "succeeded"
    sent = _embedded(fake)[before:]
    # Only the chunk holding the edit is embedded (the short new paragraph joined the one
    # before it); the chunker's boundaries fall back in step right after it.
    assert len(sent) == 1 and "rewritten" in sent[0]
    usage = _usage(rt, copy)
    assert (usage["inputs"], usage["reused"]) == (1, result.chunks - 1)
    # Both documents have all their points, each with its own id.
    with rt.sessions() as s:
        rows = s.scalars(select(DocumentChunk.id)).all()
    assert rt.vector_store.point_ids() == set(rows)
    assert len(rows) == len(PARAGRAPHS) + result.chunks


def test_repeated_texts_in_one_call_are_embedded_once(rt: Runtime, fake: FakeOpenAI) -> None:
    boilerplate = (
        "Confidential. Do not distribute outside the company without written approval. "
        "This report was prepared for internal planning and may contain forward-looking "
        "statements. Figures are unaudited and subject to change without notice at any time."
    )
    docs = [
        _add(
            rt,
            f"{i}.txt",
            f"{boilerplate}\n\nReport number {i} about topic {i * 7}, with its own findings "
            "and the recommendations of the review board for the next quarter.",
        )
        for i in range(5)
    ]
    with rt.sessions() as s:
        jobs = [(d, services.get_document(s, d).generation) for d in docs]
    results = list(process_many(rt, jobs))
    assert [r.outcome for r in results] == ["succeeded"] * 5
    sent = _embedded(fake)
    assert sent.count(boilerplate) == 1 and len(sent) == 6
    shared = sum(_usage(rt, d)["shared"] + _usage(rt, d)["reused"] for d in docs)
    assert shared == 4
    with rt.sessions() as s:
        assert s.query(DocumentChunk).count() == 10


def test_reuse_never_crosses_index_versions(rt: Runtime, fake: FakeOpenAI) -> None:
    for i, p in enumerate(PARAGRAPHS[:3]):
        assert process_document(rt, _add(rt, f"{i}.txt", p)).outcome == "succeeded"
    with rt.sessions() as s:
        project = services.find_project(s, "p")
        spec, follows = indexes.spec_for(rt.settings, model="fake-b", dimensions=8)
        version_id = indexes.create_version(
            s, project=project, spec=spec, settings=rt.settings, follows_settings=follows
        ).id
        s.commit()
    before = len(fake.embed_requests)
    assert run_build(rt, version_id, keep_versions=1).activated
    new = fake.embed_requests[before:]
    # Every text embedded again by the new model: nothing came from version 1's vectors.
    assert sorted(t for r in new for t in (r.body or {})["input"]) == sorted(PARAGRAPHS[:3])
    assert all((r.body or {})["model"] == "fake-b" for r in new)
    # A copy in the new version reuses the new version's vector, of the new size.
    extra = (
        "A new closing paragraph, found nowhere else in the project, about harbour cranes that "
        "lift containers from the ships at night and stack them on the quay for the trains."
    )
    dup = _add(rt, "dup.txt", PARAGRAPHS[1] + "\n\n" + extra)
    count = len(_embedded(fake))
    assert process_document(rt, dup).outcome == "succeeded"
    assert _embedded(fake)[count:] == [extra]  # paragraph 1's vector came from version 2
    with rt.sessions() as s:
        v2 = indexes.get_version(s, project.id, 2)
        store = rt.store_for(v2.collection)
    for stored in store.vectors(store.point_ids(document_ids=[dup])).values():
        assert len(stored.vector) == 8
