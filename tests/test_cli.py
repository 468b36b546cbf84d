"""The CLI main job as a user runs it: `docvec ingest`, `search`, `status` as subprocesses on the
embedded defaults (SQLite + Qdrant Edge + the local model under DOCVEC_DATA_DIR).

The folder is a cross-section of the real corpus — every kind of file and every kind of failure —
small enough for the real model on 2 cores; `make demo` runs the whole corpus.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SUBSET = {
    "pdf/text/pdflatex-4-pages.pdf": "vectorized",
    "pdf/text/google-doc-document.pdf": "vectorized",
    "pdf/encrypted/copy-protected.pdf": "vectorized",
    "pdf/encrypted/password.pdf": "failed",
    "pdf/scanned/grayscale-image.pdf": "failed",
    "pdf/broken/truncated-pdflatex-4-pages.pdf": "failed",
    "docx/docx-tables.docx": "vectorized",
    "docx/broken/word-owner-lockfile.docx": "failed",
    "text/md/en/fastapi__deployment__docker.md": "vectorized",
    "text/md/es/fastapi__features.md": "vectorized",
    "text/edge_cases/umlauts-non-utf8.md": "vectorized",
    "text/edge_cases/fake-text-utf-16-le.txt": "vectorized",
    "text/edge_cases/empty.txt": "failed",
    "text/txt/rfc1035.txt": "vectorized",
}


def _docvec(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).parent / "docvec")
    return subprocess.run(
        [exe, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=900
    )


@pytest.fixture
def folder(tmp_path: Path, corpus: Path) -> Path:
    root = tmp_path / "docs"
    for rel in SUBSET:
        dst = root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(corpus / rel, dst)
    # The same bytes under another name: one document, reported as a duplicate.
    shutil.copy(corpus / "text/txt/rfc1035.txt", root / "zz-copy-of-rfc1035.txt")
    return root


def test_ingest_search_status_and_rerun(folder: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCVEC_")}
    env["DOCVEC_DATA_DIR"] = str(data_dir)

    r = _docvec("ingest", str(folder), "--project", "corpus", "--json", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout)
    got = {f["file"]: "vectorized" for f in report["vectorized"]}
    got.update({f["file"]: "failed" for f in report["failed"]})
    assert got == SUBSET
    assert all(f["reason"] and f["stage"] for f in report["failed"])
    assert [s["file"] for s in report["skipped"]] == ["zz-copy-of-rfc1035.txt"]
    assert "same content as text/txt/rfc1035.txt" in report["skipped"][0]["reason"]
    assert report["chunks"] == sum(f["chunks"] for f in report["vectorized"]) > 0
    assert (data_dir / "docvec.db").is_file() and (data_dir / "edge").is_dir()

    # Running it again does no work for unchanged files, and says so.
    r2 = _docvec("ingest", str(folder), "--project", "corpus", "--json", env=env, cwd=tmp_path)
    assert r2.returncode == 0, r2.stderr[-3000:]
    again = json.loads(r2.stdout)
    assert again["vectorized"] == [] and again["failed"] == [] and again["chunks"] == 0
    assert len(again["skipped"]) == len(SUBSET) + 1
    assert all(
        "unchanged" in s["reason"] or "same content" in s["reason"] for s in again["skipped"]
    )

    # The human-readable run prints the summary table.
    r3 = _docvec("ingest", str(folder), "--project", "corpus", env=env, cwd=tmp_path)
    assert r3.returncode == 0 and "vectorized" in r3.stdout and "skipped" in r3.stdout

    s = _docvec(
        "search",
        "What does a DNS resource record contain?",
        "--project",
        "corpus",
        "--top-k",
        "3",
        "--json",
        env=env,
        cwd=tmp_path,
    )
    assert s.returncode == 0, s.stderr[-3000:]
    hits = json.loads(s.stdout)["results"]
    assert len(hits) == 3 and hits[0]["file_name"].endswith("rfc1035.txt")
    assert {"score", "file_name", "chunk_index", "page", "text"} <= set(hits[0])
    pdf = _docvec(
        "search",
        "pdflatex filler text",
        "--project",
        "corpus",
        "--top-k",
        "20",
        "--json",
        env=env,
        cwd=tmp_path,
    )
    assert any(h["page"] for h in json.loads(pdf.stdout)["results"])

    st = _docvec("status", "--project", "corpus", "--json", env=env, cwd=tmp_path)
    assert st.returncode == 0, st.stderr[-3000:]
    proj = json.loads(st.stdout)["projects"][0]
    expected = {
        "vectorized": list(SUBSET.values()).count("vectorized"),
        "failed": list(SUBSET.values()).count("failed"),
    }
    assert proj["documents_by_status"] == expected
    failed = next(d for d in proj["documents"] if d["status"] == "failed")
    one = _docvec("status", failed["id"], "--json", env=env, cwd=tmp_path)
    detail = json.loads(one.stdout)
    assert detail["error"] and detail["attempts"][0]["outcome"] == "failed"

    missing = _docvec("search", "x", "--project", "nope", env=env, cwd=tmp_path)
    assert missing.returncode != 0 and "not found" in missing.stderr
