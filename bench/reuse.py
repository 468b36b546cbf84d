"""Doing less work: chunks embedded at a first ingest, at a no-op re-vectorize, and after a
one-paragraph edit, on a real long document, in one process.

    .venv/bin/python bench/reuse.py [--quick] [--document PATH]

The document (default: the corpus's 872-page handbook DOCX; ``--quick``: its 1-page excerpt) is
ingested as ``docvec ingest`` does (``process_many`` on the embedded defaults, the local model).
Then it is re-vectorized unchanged, and a copy with one paragraph in the middle rewritten (with
python-docx) is ingested into the same project, as a new version of a file arrives. For each run:
chunks, texts sent to the model (the attempt rows' ``usage.inputs``), chunks whose vector was
reused from the store or shared with a repeated text, and wall seconds. Targets (issue "Do less
work"): no-op re-run 0 % re-embedded, one-paragraph edit at most 5 %.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common

common.setup_environment()

import docx  # noqa: E402
from sqlalchemy import select  # noqa: E402

from app import services  # noqa: E402
from app.config import Settings  # noqa: E402
from app.db import migrate  # noqa: E402
from app.db.models import VectorizationAttempt  # noqa: E402
from app.pipeline.ingest import process_many  # noqa: E402
from app.runtime import Runtime  # noqa: E402


def _edited_copy(src: Path, dst: Path) -> str:
    """``src`` with the longest paragraph of its middle third rewritten; returns the old text."""
    document = docx.Document(str(src))
    paragraphs = [p for p in document.paragraphs if len(p.text) > 80]
    middle = paragraphs[len(paragraphs) // 3 : 2 * len(paragraphs) // 3] or paragraphs
    target = max(middle, key=lambda p: len(p.text))
    old = target.text
    for run in target.runs[1:]:
        run.text = ""
    target.runs[0].text = (
        "This paragraph was rewritten for the benchmark: the trustee now reviews the filing "
        "within thirty days, and the parties are told of the outcome in writing."
    )
    document.save(str(dst))
    return old


def _run(rt: Runtime, jobs: list[tuple[uuid.UUID, int]]) -> dict[str, float]:
    t = time.perf_counter()
    results = list(process_many(rt, jobs))
    wall = time.perf_counter() - t
    assert all(r.outcome == "succeeded" for r in results), [r.error for r in results]
    with rt.sessions() as s:
        usage = {"inputs": 0, "reused": 0, "shared": 0}
        for doc_id, _ in jobs:
            row = s.scalars(
                select(VectorizationAttempt)
                .where(VectorizationAttempt.document_id == doc_id)
                .order_by(VectorizationAttempt.started_at.desc())
            ).first()
            assert row is not None and row.usage is not None
            for k in usage:
                usage[k] += int(row.usage.get(k) or 0)
    chunks = sum(r.chunks for r in results)
    return {"chunks": chunks, **usage, "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--document", type=Path)
    args = ap.parse_args()
    source = args.document or common.CORPUS / (
        "docx/handbook-1p.docx" if args.quick else "docx/handbook-872p.docx"
    )
    before = common.machine()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(_env_file=None, data_dir=Path(tmp) / "data")  # type: ignore[call-arg]
        migrate.upgrade(settings.sqlalchemy_url)
        original = Path(tmp) / source.name
        shutil.copy(source, original)
        edited = Path(tmp) / f"edited-{source.name}"
        _edited_copy(source, edited)
        rt = Runtime(settings)
        try:
            rt.provider.embed_query("warm-up")
            with rt.sessions() as s:
                project = services.get_or_create_project(s, name="bench")
                doc = services.add_document(
                    s, project=project, storage=rt.storage, file_name=original.name, path=original
                ).document
                s.commit()
                first_job = [(doc.id, doc.generation)]
            first = _run(rt, first_job)
            with rt.sessions() as s:
                generation = services.request_revectorize(
                    s, document=services.get_document(s, doc.id)
                )
                s.commit()
            noop = _run(rt, [(doc.id, generation)])
            with rt.sessions() as s:
                project = services.find_project(s, "bench")
                copy = services.add_document(
                    s, project=project, storage=rt.storage, file_name=edited.name, path=edited
                ).document
                s.commit()
                edit_job = [(copy.id, copy.generation)]
            edit = _run(rt, edit_job)
        finally:
            rt.close()
    after = common.machine()

    def pct(run: dict[str, float]) -> str:
        return f"{100 * run['inputs'] / run['chunks']:.2f} %"

    rows = [
        (name, int(r["chunks"]), int(r["inputs"]), pct(r), int(r["reused"]), int(r["shared"]),
         round(r["wall_s"], 1))
        for name, r in [("first ingest", first), ("no-op re-vectorize", noop),
                        ("one-paragraph edit", edit)]
    ]  # fmt: skip
    common.console.print(
        common.table(
            f"reuse on {source.name}",
            ["run", "chunks", "embedded", "re-embedded", "reused", "shared", "wall s"],
            rows,
        )
    )
    common.console.print(common.load_note(before, after))
    common.save(
        "reuse",
        {"document": str(source), "first": first, "noop": noop, "edit": edit, "machine": before},
    )


if __name__ == "__main__":
    main()
