"""``docvec ingest`` and new versions of a file (README, "New versions of a document"): an edited
file replaces the document recorded under its path — same id, only the changed chunks embedded,
no chunk of the old version left in SQL or in the vector store — on the embedded defaults
(SQLite, Qdrant Edge, the local model), through the command as a user runs it."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select
from typer.testing import CliRunner

from app.cli import app as cli_app
from app.config import Settings, get_settings
from app.db.models import Document, DocumentChunk, VectorizationAttempt
from app.runtime import Runtime

pytestmark = pytest.mark.slow

#: Small chunks, one per paragraph, so that an edit touches one chunk (as tests/pipeline/
#: test_reuse.py does); set for the CLI through its environment.
CHUNKING = {
    "DOCVEC_CHUNKING__CHUNK_SIZE": "300",
    "DOCVEC_CHUNKING__CHUNK_OVERLAP": "0",
    "DOCVEC_CHUNKING__MIN_CHUNK_SIZE": "16",
}
PARAGRAPHS = [
    f"Paragraph {i} of the guide: " + " ".join(f"g{i}w{j}" for j in range(36)) + "."
    for i in range(10)
]


def _ingest(monkeypatch: pytest.MonkeyPatch, data_dir: Path, *args: str) -> dict[str, Any]:
    report = json.loads(_cli(monkeypatch, data_dir, "ingest", *args, "--json"))
    assert isinstance(report, dict)
    return report


def _cli(monkeypatch: pytest.MonkeyPatch, data_dir: Path, *args: str) -> str:
    monkeypatch.setenv("DOCVEC_DATA_DIR", str(data_dir))
    for key, value in CHUNKING.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli_app, list(args))
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    return str(result.stdout)


def _docs(data_dir: Path) -> list[tuple[uuid.UUID, str, int]]:
    """Every document: (id, file_name, chunk_count), by file name then creation."""
    engine = create_engine(f"sqlite:///{data_dir / 'docvec.db'}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(Document.id, Document.file_name, Document.chunk_count).order_by(
                    Document.file_name, Document.created_at
                )
            ).all()
    finally:
        engine.dispose()
    return [(r[0], r[1], r[2]) for r in rows]


def _last_usage(data_dir: Path, doc_id: uuid.UUID) -> dict[str, int]:
    engine = create_engine(f"sqlite:///{data_dir / 'docvec.db'}")
    try:
        with engine.connect() as conn:
            usage = conn.execute(
                select(VectorizationAttempt.usage)
                .where(VectorizationAttempt.document_id == doc_id)
                .order_by(VectorizationAttempt.started_at.desc())
            ).first()
            chunks = conn.scalar(select(func.count()).where(DocumentChunk.document_id == doc_id))
    finally:
        engine.dispose()
    assert usage is not None and usage[0] is not None
    return {**usage[0], "chunk_rows": chunks}


def _lexical(monkeypatch: pytest.MonkeyPatch, data_dir: Path, query: str) -> list[str]:
    out = _cli(monkeypatch, data_dir, "search", query, "-p", "guide", "--mode", "lexical", "--json")
    return [h["text"] for h in json.loads(out)["results"]]


def test_an_edited_file_replaces_its_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local_provider: Any
) -> None:
    data_dir = tmp_path / "state"
    docs = tmp_path / "docs"
    (docs / "guide").mkdir(parents=True)
    (docs / "other").mkdir()
    notes = docs / "guide" / "notes.md"
    notes.write_text("\n\n".join(PARAGRAPHS))
    # The same base name in another folder is another document, never a version of this one.
    (docs / "other" / "notes.md").write_text("A different file that shares the base name.")

    first = _ingest(monkeypatch, data_dir, str(docs), "-p", "guide")
    assert len(first["vectorized"]) == 2 and first["updated"] == []
    before = _docs(data_dir)
    assert [(name, n) for _, name, n in before] == [
        ("guide/notes.md", len(PARAGRAPHS)),
        ("other/notes.md", 1),
    ]
    doc_id = before[0][0]
    assert any("g6w3" in t for t in _lexical(monkeypatch, data_dir, "g6w3 g6w4"))
    old_sha_files = {p.name for p in (data_dir / "files").rglob("*") if p.is_file()}

    # Edit one paragraph: a new version of the same document; one chunk embedded.
    edited = list(PARAGRAPHS)
    edited[6] = (
        "Paragraph 6 was rewritten: the meeting moved to the harbour "
        + " ".join(f"h6w{j}" for j in range(30))
        + "."
    )
    notes.write_text("\n\n".join(edited))
    second = _ingest(monkeypatch, data_dir, str(docs), "-p", "guide")
    assert second["updated"] == [{"file": "guide/notes.md", "document_id": str(doc_id)}]
    assert [v["file"] for v in second["vectorized"]] == ["guide/notes.md"]
    assert [s["file"] for s in second["skipped"]] == ["other/notes.md"]
    assert [d[0] for d in _docs(data_dir)] == [d[0] for d in before]  # same ids, none added
    usage = _last_usage(data_dir, doc_id)
    assert (usage["inputs"], usage["reused"]) == (1, len(PARAGRAPHS) - 1)
    assert usage["chunk_rows"] == len(PARAGRAPHS)
    assert _lexical(monkeypatch, data_dir, "g6w3 g6w4") == []
    assert any("harbour" in t for t in _lexical(monkeypatch, data_dir, "harbour"))
    # The old version's file is gone (no other document had its bytes); the new one is there.
    files_now = {p.name for p in (data_dir / "files").rglob("*") if p.is_file()}
    assert len(files_now) == len(old_sha_files) and files_now != old_sha_files

    # A shorter version: the chunk indexes past its end go, rows and points alike.
    notes.write_text("\n\n".join(edited[:4]))
    third = _ingest(monkeypatch, data_dir, str(docs), "-p", "guide")
    assert [u["file"] for u in third["updated"]] == ["guide/notes.md"]
    usage = _last_usage(data_dir, doc_id)
    assert (usage["inputs"], usage["chunk_rows"]) == (0, 4)  # every text was there already
    assert [(name, n) for _, name, n in _docs(data_dir)] == [
        ("guide/notes.md", 4),
        ("other/notes.md", 1),
    ]
    assert _lexical(monkeypatch, data_dir, "harbour g9w1 g5w2") == []
    settings = Settings(_env_file=None, data_dir=data_dir)  # type: ignore[call-arg]
    rt = Runtime(settings, provider=local_provider)
    try:
        with rt.sessions() as s:
            rows = set(s.scalars(select(DocumentChunk.id)))
        assert rt.vector_store.point_ids() == rows
        assert len(rt.vector_store.point_ids(document_ids={doc_id})) == 4
    finally:
        rt.close()
    report = json.loads(_cli(monkeypatch, data_dir, "reconcile", "--json"))
    assert report["clean"], report

    # Edited into the other file's bytes: skipped, saying whose they are; nothing changes.
    notes.write_text("A different file that shares the base name.")
    same = _ingest(monkeypatch, data_dir, str(docs), "-p", "guide")
    assert same["updated"] == [] and same["vectorized"] == []
    reasons = {s["file"]: s["reason"] for s in same["skipped"]}
    assert "keeps its version" in reasons["guide/notes.md"]
    assert ("guide/notes.md", 4) in [(name, n) for _, name, n in _docs(data_dir)]

    # --keep-old-versions: today's behaviour, a new document beside the old one.
    notes.write_text("\n\n".join(PARAGRAPHS[:3]))
    kept = _ingest(monkeypatch, data_dir, str(docs), "-p", "guide", "--keep-old-versions")
    assert kept["updated"] == [] and [v["file"] for v in kept["vectorized"]] == ["guide/notes.md"]
    named = [d for d in _docs(data_dir) if d[1] == "guide/notes.md"]
    assert len(named) == 2 and doc_id in {d[0] for d in named}

    # Two documents of that name now: the next edit guesses nothing and says so.
    notes.write_text("\n\n".join(PARAGRAPHS[:2]))
    fourth = _ingest(monkeypatch, data_dir, str(docs), "-p", "guide")
    assert fourth["updated"] == []
    (beside,) = fourth["added_beside"]
    assert beside["file"] == "guide/notes.md" and "not guessing" in beside["reason"]
    assert len([d for d in _docs(data_dir) if d[1] == "guide/notes.md"]) == 3

    # The table names the new column.
    notes.write_text("\n\n".join(PARAGRAPHS[:1]))
    table = _cli(monkeypatch, data_dir, "ingest", str(docs), "-p", "guide")
    assert "updated" in table and "not guessing" in table

    # `docvec replace DOCUMENT_ID FILE`: one document, by id; its recorded path stays.
    loose = tmp_path / "notes.md"
    loose.write_text("\n\n".join(PARAGRAPHS[5:7]))
    done = json.loads(_cli(monkeypatch, data_dir, "replace", str(doc_id), str(loose), "--json"))
    assert done == {"document_id": str(doc_id), "changed": True, "outcomes": {"succeeded": 1}}
    assert (doc_id, "guide/notes.md", 2) in _docs(data_dir)
    again = json.loads(_cli(monkeypatch, data_dir, "replace", str(doc_id), str(loose), "--json"))
    assert again["changed"] is False and again["outcomes"] is None
    gif = tmp_path / "x.gif"
    gif.write_bytes(b"GIF89a" + b"\x00" * 100)
    monkeypatch.setenv("DOCVEC_DATA_DIR", str(data_dir))
    get_settings.cache_clear()
    try:
        refused = CliRunner().invoke(cli_app, ["replace", str(doc_id), str(gif)])
    finally:
        get_settings.cache_clear()
    assert refused.exit_code == 1 and "GIF" in refused.output
    assert (doc_id, "guide/notes.md", 2) in _docs(data_dir)
