"""A hostile-file corpus through the real service: every bad file gets a clear per-document error,
the worker survives, and healthy documents uploaded alongside still vectorize.

The corpus is made here (see tests/security/hostile.py) — truncations and bit flips of real files,
zip bombs, encrypted files, wrong extensions, giant lines, files built to exhaust the time and the
memory budget — plus the broken, encrypted, image-only and odd-encoding files of the shared corpus.

The service is real: the API in this process (the real Celery enqueuer), a `docvec worker` process
(prefork children, concurrency 2) on the real Redis, PostgreSQL for SQL and pgvector for vectors.
The worker runs with a 60 s / 512 MiB extraction budget so that the budget cases finish quickly.

Expected outcomes are written out per file, except for the random mutations, whose expected
outcome is what :func:`app.pipeline.extract.extract` says in this process (the oracle): the worker
must agree with it, and it must be a docvec error or a success, never an internal error.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.api.main import create_app
from app.config import Settings
from app.db.models import DocumentChunk, VectorizationAttempt
from app.errors import DocvecError, PermanentError
from app.pipeline.extract import detect_type, extract
from app.runtime import Runtime
from tests.ops.harness import Proc
from tests.pipeline import scans
from tests.security import hostile

pytestmark = pytest.mark.slow

# Generous for a loaded 2-core machine; the slow PDF needs minutes whatever the load.
EXTRACT_TIMEOUT_S = 60
EXTRACT_MEMORY_MB = 512


@dataclass
class Case:
    """One file of the corpus and what must happen to it.

    ``expect`` is ``"vectorized"``, an HTTP status refusing the upload (413/415/422), or the
    error class name with a regular expression its message must match; None asks the oracle.
    """

    name: str
    make: Callable[[], bytes]
    expect: str | int | tuple[str, str] | None = None


def _corpus(rel: str) -> Callable[[], bytes]:
    from tests.conftest import CORPUS

    return lambda: (CORPUS / rel).read_bytes()


def _random_bytes(seed: str, size: int = 4096) -> Callable[[], bytes]:
    return lambda: random.Random(seed).randbytes(size)


TOO_LARGE = "DocumentTooLarge"
CORRUPT = "CorruptDocument"
EMPTY = "EmptyDocument"
ENCRYPTED = "EncryptedDocument"
UNSUPPORTED = "UnsupportedFormat"


def _made_here() -> list[Case]:
    cases = [
        # First, so that its minute of waiting overlaps the processing of the others.
        Case("slow.pdf", hostile.pdf_slow, (TOO_LARGE, rf"took longer than {EXTRACT_TIMEOUT_S} s")),
        # ---- DOCX: zip bombs, encryption, not-a-docx
        Case("ratio-bomb.docx", hostile.docx_ratio_bomb, (TOO_LARGE, r"1,0\d\d:1.*zip bomb")),
        Case(
            "size-bomb.docx", hostile.docx_size_bomb, (TOO_LARGE, r"would inflate to 221,027,157")
        ),
        Case("entry-bomb.docx", hostile.docx_entry_bomb, (TOO_LARGE, r"10,067 ZIP entries")),
        Case("lying-sizes.docx", hostile.docx_lying_sizes, (CORRUPT, r"Bad CRC-32")),
        Case("memory-hog.docx", hostile.docx_memory_hog, (TOO_LARGE, r"more than 512 MiB")),
        Case("password.docx", hostile.encrypted_office_file, 415),
        Case("archive.docx", hostile.plain_zip, (CORRUPT, r"not a Word document|corrupt")),
        Case("random.docx", _random_bytes("docx"), (CORRUPT, r"not a readable ZIP")),
        # A Word lock file under its real kind of name: the message says what it is.
        Case(
            "~$xample.docx",
            lambda: b"\x05Alice" + bytes(50) + b"\x05\x00A\x00l\x00i\x00c\x00e" + bytes(90),
            (CORRUPT, r"this is a Word lock file"),
        ),
        # ---- PDF: encryption, size, time, images only
        Case(
            "rc4-password.pdf",
            lambda: hostile.pdf_bytes([hostile.text_op("secret")], user_password="pw"),
            (ENCRYPTED, r"encrypted with a password"),
        ),
        Case(
            "aes256-password.pdf",
            lambda: hostile.pdf_bytes(
                [hostile.text_op("secret")], user_password="pw", algorithm="AES-256"
            ),
            (ENCRYPTED, r"encrypted with a password"),
        ),
        Case(
            "aes256-empty-password.pdf",
            lambda: hostile.pdf_bytes(
                [hostile.text_op("Opens with the empty password. " * 20)],
                user_password="",
                algorithm="AES-256",
            ),
            "vectorized",
        ),
        Case(
            "5001-pages.pdf",
            lambda: hostile.pdf_many_pages(5001),
            (TOO_LARGE, r"5001 pages; the limit is 5000"),
        ),
        Case(
            "huge-stream.pdf",
            hostile.pdf_inflating_stream,
            (TOO_LARGE, r"too large or complex to read safely \(page 1\)"),
        ),
        Case(
            "blank-pages.pdf",
            lambda: hostile.pdf_bytes([None, None, None]),
            (EMPTY, r"no text, even after OCR — the PDF has 3 page\(s\)"),
        ),
        Case("random.pdf", _random_bytes("pdf"), (CORRUPT, r"corrupt PDF")),
        # ---- wrong extensions: content wins
        Case("report.docx", _corpus("pdf/text/crazyones-pdfa.pdf"), "vectorized"),
        Case("letter.pdf", _corpus("docx/eng_spa_mult.docx"), "vectorized"),
        # A PNG signature is a PNG, whatever the name; this one is broken.
        Case("scan.pdf", lambda: b"\x89PNG\r\n\x1a\n" + bytes(500), (CORRUPT, r"corrupt PNG")),
        Case("notes.pdf", lambda: b"Just some notes, not a PDF at all.\n" * 30, (CORRUPT, "PDF")),
        Case("tool.txt", lambda: b"\x7fELF\x02\x01\x01\x00" + bytes(500), 415),
        Case(
            "photo.md",
            lambda: b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(500),
            (CORRUPT, r"corrupt JPEG image"),
        ),
        # ---- images (OCR): bombs, truncated or lying files, too many pages
        Case("bomb.png", lambda: scans.png_claiming(30_000, 30_000), 413),
        Case(
            "truncated.png",
            lambda: hostile.truncated(scans.screenshot(scans.prose())[0], 0.5),
            (CORRUPT, r"image file is truncated"),
        ),
        Case(
            "jpeg-inside.png",
            lambda: b"\x89PNG\r\n\x1a\n" + scans.encoded(scans.typeset("x")[0], "JPEG"),
            (CORRUPT, r"Pillow cannot read its header"),
        ),
        Case(
            "100-pages.tif",
            lambda: scans.tiff_with_pages(100),
            (TOO_LARGE, r"more than 50 pages"),
        ),
        Case("text.png", lambda: b"Only text, named like a picture.\n" * 20, 415),
        Case(
            "page.md", lambda: b"<html><body><p>An HTML page</p></body></html>\n" * 20, "vectorized"
        ),
        # ---- text: giant lines, NUL bytes, encodings, emptiness
        Case(
            "giant-line-50MB.txt",
            lambda: hostile.giant_line(50 * hostile.MIB),
            (TOO_LARGE, r"52,428,\d{3} characters of text; the limit is 20,000,000"),
        ),
        Case("unbroken-300kB.txt", lambda: hostile.unbroken_token(300_000), "vectorized"),
        Case("nul-sprinkled.txt", hostile.nul_sprinkled, "vectorized"),
        Case("mostly-nul.txt", hostile.mostly_nul, (UNSUPPORTED, r"binary data")),
        Case("random.txt", _random_bytes("txt"), (UNSUPPORTED, r"binary data")),
        Case("mixed-encodings.txt", hostile.mixed_encodings, "vectorized"),
        Case(
            "utf16-no-bom.txt",
            lambda: "Text in UTF-16 without a byte order mark. ".encode("utf-16-le") * 20,
            "vectorized",
        ),
        Case("zero-bytes.pdf", lambda: b"", 422),
        Case("only-whitespace.md", lambda: b" \n\t\r\n  \n" * 100, (EMPTY, r"only whitespace")),
        # ---- a hostile name on a healthy file
        Case(
            "../../etc/passwd.txt",
            lambda: b"root:x:0:0 is just text here; the name must not reach the disk. " * 5,
            "vectorized",
        ),
    ]
    # ---- truncations and bit flips of real files: the oracle decides
    for rel in ("pdf/text/pdflatex-4-pages.pdf", "pdf/text/crazyones-pdfa.pdf"):
        for fraction in (0.2, 0.5, 0.9):
            cases.append(
                Case(
                    f"cut{int(fraction * 100)}-{Path(rel).name}",
                    lambda rel=rel, f=fraction: hostile.truncated(_corpus(rel)(), f),
                )
            )
        for seed in (1, 2):
            cases.append(
                Case(
                    f"flip{seed}-{Path(rel).name}",
                    lambda rel=rel, s=seed: hostile.bit_flipped(_corpus(rel)(), flips=30, seed=s),
                )
            )
    for rel in ("docx/handbook-1p.docx", "docx/eng_spa_mult.docx"):
        for fraction in (0.2, 0.5, 0.9):
            cases.append(
                Case(
                    f"cut{int(fraction * 100)}-{Path(rel).name}",
                    lambda rel=rel, f=fraction: hostile.truncated(_corpus(rel)(), f),
                )
            )
        for seed in (1, 2):
            cases.append(
                Case(
                    f"flip{seed}-{Path(rel).name}",
                    lambda rel=rel, s=seed: hostile.bit_flipped(_corpus(rel)(), flips=10, seed=s),
                )
            )
    return cases


# The shared corpus's broken, encrypted, image-only and odd-encoding files (MANIFEST.md).
FROM_CORPUS: dict[str, str | int | tuple[str, str]] = {
    "pdf/broken/truncated-pdflatex-4-pages.pdf": (CORRUPT, r"corrupt PDF"),
    "pdf/broken/issue-297.pdf": "vectorized",
    "pdf/broken/invalid-pdf-structure-pdfminer-one-page.pdf": "vectorized",
    "pdf/encrypted/libreoffice-writer-password.pdf": (ENCRYPTED, r"encrypted with a password"),
    "pdf/encrypted/password.pdf": (ENCRYPTED, r"encrypted with a password"),
    "pdf/encrypted/copy-protected.pdf": "vectorized",
    "pdf/scanned/loremipsum-flat.pdf": "vectorized",
    "pdf/scanned/grayscale-image.pdf": (EMPTY, r"no text, even after OCR"),
    "docx/broken/strict.docx": (CORRUPT, r"'Strict Open XML' documents are not supported"),
    "docx/broken/word-owner-lockfile.docx": (CORRUPT, r"not a readable ZIP archive"),
    "docx/broken/truncated-handbook-1p.docx": (CORRUPT, r"not a readable ZIP archive"),
    "text/edge_cases/empty.txt": 422,
    "text/edge_cases/fake-text-all-whitespace.txt": (EMPTY, r"only whitespace"),
    "text/edge_cases/UTF-8-test.txt": "vectorized",
    "text/edge_cases/umlauts-non-utf8.md": "vectorized",
    "text/edge_cases/fake-text-utf-16-be.txt": "vectorized",
    "text/edge_cases/fake-text-utf-16-le.txt": "vectorized",
    "text/edge_cases/blns.txt": "vectorized",
}


def _oracle(data: bytes, name: str) -> str | int | tuple[str, str]:
    """What the API and the pipeline must do with a file, computed in this process."""
    if not data:
        return 422
    try:
        detect_type(data[:8192], name)
    except DocvecError:
        return 415
    try:
        extract(data, name)
    except PermanentError as exc:
        return (type(exc).__name__, "")
    return "vectorized"


# ---- the service ---------------------------------------------------------------------------------


@pytest.fixture
def service_env(make_service_env) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return make_service_env(  # type: ignore[no-any-return]
        DOCVEC_WORKER_CONCURRENCY="2",
        DOCVEC_EXTRACT_TIMEOUT_S=str(EXTRACT_TIMEOUT_S),
        DOCVEC_EXTRACT_MEMORY_MB=str(EXTRACT_MEMORY_MB),
        # Two pool children on two cores: one torch thread each, not two.
        DOCVEC_EMBEDDING__NUM_THREADS="1",
    )


@pytest.fixture
def worker(service_env: dict[str, str], spawn_worker) -> Proc:  # type: ignore[no-untyped-def]
    return spawn_worker(service_env)


@pytest.fixture
def client(service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    for k, v in service_env.items():
        monkeypatch.setenv(k, v)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    rt = Runtime(settings)
    with TestClient(create_app(settings, runtime=rt)) as c:
        c.rt = rt  # type: ignore[attr-defined]
        yield c
    rt.close()


def _upload(client: TestClient, pid: str, name: str, data: bytes) -> Any:
    return client.post(
        f"/projects/{pid}/documents",
        files=[("files", (name, data, "application/octet-stream"))],
    )


def _wait(
    client: TestClient, ids: list[str], proc: Proc, timeout: float = 420
) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        docs = {i: client.get(f"/documents/{i}").json() for i in ids}
        pending = {
            i: d["status"] for i, d in docs.items() if d["status"] not in ("vectorized", "failed")
        }
        if not pending:
            return docs
        assert proc.alive(), f"the worker process died: {proc.tail()}"
        if time.monotonic() > deadline:
            pytest.fail(f"documents not done in {timeout}s: {pending}")
        time.sleep(1)


def _error_classes(rt: Runtime, ids: list[str]) -> dict[str, str | None]:
    """The error class of each document's last attempt, from SQL."""
    with rt.sessions() as s:
        rows = s.execute(
            select(VectorizationAttempt.document_id, VectorizationAttempt.error_class)
            .where(VectorizationAttempt.document_id.in_([uuid.UUID(i) for i in ids]))
            .order_by(VectorizationAttempt.started_at)
        ).all()
    return {str(doc_id): error_class for doc_id, error_class in rows}


def test_hostile_corpus(client: TestClient, worker: Proc, tmp_path: Path, corpus: Path) -> None:
    rt: Runtime = client.rt  # type: ignore[attr-defined]
    pid = client.post("/projects", json={"name": "hostile"}).json()["id"]

    healthy = (corpus / "text/md/en/fastapi__features.md").read_bytes()
    cases = [Case("healthy-first.md", lambda: healthy, "vectorized"), *_made_here()]
    cases += [Case(rel, _corpus(rel), expect) for rel, expect in FROM_CORPUS.items()]
    made_here = len(cases) - 1 - len(FROM_CORPUS)
    assert made_here >= 40, made_here

    expected: dict[str, str | int | tuple[str, str]] = {}
    accepted: dict[str, str] = {}  # document id -> case name
    started = time.monotonic()
    for case in cases:
        data = case.make()
        want = case.expect if case.expect is not None else _oracle(data, case.name)
        expected[case.name] = want
        r = _upload(client, pid, case.name, data)
        if isinstance(want, int):
            assert r.status_code == want, (case.name, r.status_code, r.text)
            continue
        assert r.status_code == 202, (case.name, r.text)
        (doc,) = r.json()["documents"]
        assert doc["created"], (case.name, "same bytes as another case")
        accepted[doc["id"]] = case.name
    assert sum(isinstance(w, int) for w in expected.values()) >= 6  # refused at upload

    uploaded = time.monotonic()
    docs = _wait(client, list(accepted), worker)
    took = time.monotonic() - uploaded
    print(f"made and uploaded in {uploaded - started:.1f} s, processed in {took:.1f} s")
    classes = _error_classes(rt, list(accepted))
    problems = []
    for doc_id, name in accepted.items():
        doc, want = docs[doc_id], expected[name]
        if want == "vectorized":
            if doc["status"] != "vectorized" or doc["chunk_count"] < 1:
                problems.append(f"{name}: {doc['status']} {doc['error']}")
            continue
        assert isinstance(want, tuple)
        error_class, pattern = want
        if (
            doc["status"] != "failed"
            or doc["failed_stage"] != "extract"
            or classes[doc_id] != error_class
            or not re.search(pattern, doc["error"] or "")
            or (doc["error"] or "").startswith("internal error")
        ):
            problems.append(
                f"{name}: want {error_class} /{pattern}/, got {doc['status']} "
                f"{classes[doc_id]} at {doc['failed_stage']}: {doc['error']}"
            )
    assert not problems, "\n".join(problems)

    # The file name never reached the disk; stored files are named by their hash.
    by_name = {d["file_name"]: d for d in docs.values()}
    assert "passwd.txt" in by_name
    for path in Path(tmp_path / "files").rglob("*"):
        if path.is_file():
            assert len(path.name) == 64 and path.name == path.name.lower()

    # Vectorized documents have a point per chunk in the vector store.
    for d in docs.values():
        if d["status"] == "vectorized":
            with rt.sessions() as s:
                chunk_ids = set(
                    s.scalars(
                        select(DocumentChunk.id).where(
                            DocumentChunk.document_id == uuid.UUID(d["id"])
                        )
                    )
                )
            assert rt.vector_store.point_ids(document_ids=[uuid.UUID(d["id"])]) == chunk_ids

    # The worker survived all of it: same process, no pool child lost, and it still works.
    assert worker.alive()
    r = _upload(
        client, pid, "healthy-last.md", (corpus / "text/md/en/fastapi__async.md").read_bytes()
    )
    last = r.json()["documents"][0]["id"]
    assert _wait(client, [last], worker)[last]["status"] == "vectorized"
    log = (tmp_path / "worker.log").read_text(errors="replace")
    for sign in ("WorkerLostError", "exited with 'signal", "Traceback"):
        assert sign not in log, f"{sign} in the worker log:\n{log[-5000:]}"
