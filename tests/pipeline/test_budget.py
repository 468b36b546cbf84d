"""The extraction budget: a forked child per document, bounded in wall-clock time and memory.

The same code runs inside a real ``docvec worker`` (Celery prefork children are daemonic, which
rules out multiprocessing) in tests/security/test_hostile_corpus.py.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from app.config import Settings
from app.errors import (
    CorruptDocument,
    DocumentTooLarge,
    EmptyDocument,
    EncryptedDocument,
    PermanentError,
    UnsupportedFormat,
)
from app.pipeline.budget import (
    IN_PROCESS_MAX_BYTES,
    ExtractBudget,
    extract_within_budget,
    in_process,
    run_within_budget,
)
from app.pipeline.extract import extract
from tests.security import hostile

# The time budget is generous (a loaded machine); tests of the time budget set their own.
BUDGET = {"timeout_s": 60.0, "memory_mb": 256}


def _sleep_forever() -> None:
    time.sleep(3600)


def _allocate(mib: int) -> int:
    return len(bytearray(mib * 1024 * 1024))


def _crash() -> None:
    faulthandler.disable()  # pytest's would print the child's stack
    os.kill(os.getpid(), signal.SIGSEGV)


def _raise(exc: BaseException) -> None:
    raise exc


def _exit(code: int) -> None:
    os._exit(code)


def _children() -> set[int]:
    """Pids of this process's children (Linux)."""
    found = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        children = (task / "children").read_text().split()
        found |= {int(pid) for pid in children}
    return found


def test_result_comes_back() -> None:
    assert run_within_budget(lambda: {"text": "x" * 10}, **BUDGET) == {"text": "x" * 10}


def test_large_result_comes_back_whole() -> None:
    # Far larger than a pipe's buffer: the parent must read while the child writes.
    big = run_within_budget(lambda: "é" * (30 * 1024 * 1024), timeout_s=30, memory_mb=1024)
    assert len(big) == 30 * 1024 * 1024 and big[-1] == "é"


def test_wall_clock_budget() -> None:
    before = _children()
    started = time.monotonic()
    with pytest.raises(DocumentTooLarge, match=r"extraction took longer than 0\.5 s") as info:
        run_within_budget(_sleep_forever, timeout_s=0.5, memory_mb=256)
    assert time.monotonic() - started < 3
    assert info.value.stage == "extract"
    assert _children() == before  # killed and reaped: no zombie, no orphan


#: Runs the budget from a fresh interpreter. The budget is memory on top of what the parent
#: holds, and a long-lived parent (this pytest process) holds heap it has freed but not returned:
#: a child can fill that without any new mapping, so in here "400 MiB" could fit in "256 MiB".
_FRESH = """
import sys
from app.errors import DocumentTooLarge
from app.pipeline.budget import run_within_budget

def _allocate(mib):
    return len(bytearray(mib * 1024 * 1024))

def _many_small(mib):
    return len([bytes(1024) for _ in range(mib * 1024)])

fn = {"_allocate": _allocate, "_many_small": _many_small}[sys.argv[1]]
try:
    print("ok", run_within_budget(fn, int(sys.argv[2]), timeout_s=60.0, memory_mb=256))
except DocumentTooLarge as exc:
    print("too-large", exc.stage, exc.message)
"""


def _fresh_budget(allocate: str, mib: int) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _FRESH, allocate, str(mib)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.strip()


@pytest.mark.parametrize("allocate", ["_allocate", "_many_small"])
def test_memory_budget(allocate: str) -> None:
    out = _fresh_budget(allocate, 400)
    assert out.startswith("too-large extract "), out
    assert "needed more than 256 MiB of memory" in out
    # The same work fits in a larger budget.
    assert _fresh_budget(allocate, 100).startswith("ok ")


def test_memory_budget_counts_on_top_of_what_the_parent_holds() -> None:
    held = bytearray(300 * 1024 * 1024)  # more than the child's budget, already mapped
    try:
        assert run_within_budget(_allocate, 100, **BUDGET) == 100 * 1024 * 1024
    finally:
        del held


def test_crash_is_a_corrupt_document() -> None:
    with pytest.raises(CorruptDocument, match=r"crashed the parser \(SIGSEGV\)"):
        run_within_budget(_crash, **BUDGET)


@pytest.mark.parametrize(
    "exc", [EncryptedDocument("locked", stage="extract"), EmptyDocument("nothing", stage=None)]
)
def test_docvec_errors_keep_their_class_message_and_stage(exc: PermanentError) -> None:
    with pytest.raises(type(exc)) as info:
        run_within_budget(_raise, exc, **BUDGET)
    assert type(info.value) is type(exc)
    assert info.value.message == exc.message
    assert info.value.stage == "extract"


def test_other_exceptions_are_internal_errors() -> None:
    with pytest.raises(PermanentError, match="internal error during extraction: KeyError"):
        run_within_budget(_raise, KeyError("bug"), **BUDGET)


def test_child_that_exits_without_a_word() -> None:
    with pytest.raises(PermanentError, match="exited with status 3 without a result"):
        run_within_budget(_exit, 3, **BUDGET)


def test_parent_signal_handlers_do_not_leak_into_the_child() -> None:
    fired = []
    previous = signal.signal(signal.SIGUSR1, lambda *_: fired.append(1))
    try:

        def child() -> str:
            os.kill(os.getpid(), signal.SIGUSR1)  # default action: terminate
            return "survived"

        with pytest.raises(CorruptDocument, match="SIGUSR1"):
            run_within_budget(child, **BUDGET)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert fired == []


def test_an_interrupted_parent_kills_the_child() -> None:
    """Celery's soft time limit raises inside the waiting parent: the child must not outlive it."""

    class SoftLimit(Exception):
        pass

    def interrupt(*_: object) -> None:
        raise SoftLimit

    before = _children()
    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    try:
        with pytest.raises(SoftLimit):
            run_within_budget(_sleep_forever, timeout_s=30, memory_mb=256)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert _children() == before


def test_concurrent_budgets_from_threads() -> None:
    """Forks made by other threads hold copies of each other's pipes: no one may hang on that."""
    results: dict[int, object] = {}

    def run(i: int) -> None:
        try:
            results[i] = run_within_budget(lambda: i * 2, timeout_s=20, memory_mb=256)
        except Exception as exc:  # reported below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: i * 2 for i in range(8)}
    assert time.monotonic() - started < 10


def test_extract_within_budget_matches_extract(corpus: Path) -> None:
    data = (corpus / "pdf/text/pdflatex-4-pages.pdf").read_bytes()
    assert extract_within_budget(data, "a.pdf", ExtractBudget()) == extract(data, "a.pdf")
    settings = Settings(_env_file=None, max_pages=3)  # type: ignore[call-arg]
    with pytest.raises(DocumentTooLarge, match="4 pages; the limit is 3"):
        extract_within_budget(data, "a.pdf", settings)


def test_settings_reach_the_extractor() -> None:
    settings = Settings(_env_file=None, max_document_chars=100)  # type: ignore[call-arg]
    with pytest.raises(DocumentTooLarge, match="the limit is 100"):
        extract_within_budget(b"word " * 100, "a.txt", settings)
    assert ExtractBudget.from_settings(Settings(_env_file=None)) == ExtractBudget()  # type: ignore[call-arg]


def test_extract_timeout_must_stay_below_the_task_soft_limit() -> None:
    with pytest.raises(ValueError, match="extract_timeout_s"):
        Settings(_env_file=None, extract_timeout_s=1800)  # type: ignore[call-arg]


def test_a_slow_pdf_is_stopped_at_the_deadline() -> None:
    with pytest.raises(DocumentTooLarge, match="took longer than 2 s"):
        extract_within_budget(hostile.pdf_slow(), "slow.pdf", ExtractBudget(timeout_s=2))


def test_lxml_out_of_memory_is_reported_as_memory() -> None:
    """libxml2 reports a failed allocation as a parse error; it is still the memory budget."""
    with pytest.raises(DocumentTooLarge, match="needed more than 256 MiB"):
        extract_within_budget(hostile.docx_memory_hog(), "hog.docx", ExtractBudget(memory_mb=256))


# -- plain text and Markdown: extracted without the child ------------------------------------------


@pytest.fixture
def forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Pids of the children ``os.fork`` starts in this process (the real fork, counted)."""
    started: list[int] = []
    real_fork = os.fork

    def fork() -> int:
        pid = real_fork()
        if pid:  # the parent; a child leaves through os._exit
            started.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", fork)
    return started


@pytest.mark.parametrize(
    "rel", ["text/md/en/fastapi__async.md", "text/txt/rfc3986.txt", "text/edge_cases/blns.txt"]
)
def test_text_and_markdown_are_extracted_in_process(
    corpus: Path, forks: list[int], rel: str
) -> None:
    data = (corpus / rel).read_bytes()
    name = Path(rel).name
    assert in_process(data, name)
    assert extract_within_budget(data, name, ExtractBudget()) == extract(data, name)
    assert forks == []  # no child was started


@pytest.mark.parametrize(
    ("name", "data", "error"),
    [
        ("blank.md", b" \n\t\r\n  \n" * 100, EmptyDocument),
        ("mostly-nul.txt", hostile.mostly_nul(), UnsupportedFormat),
        ("long.txt", b"word " * 100, DocumentTooLarge),
    ],
)
def test_in_process_errors_are_the_childs(
    forks: list[int], name: str, data: bytes, error: type[PermanentError]
) -> None:
    """A refused text file fails in-process with the class, message and stage the child sends."""
    budget = ExtractBudget(max_chars=100)
    with pytest.raises(error) as here:
        extract_within_budget(data, name, budget)
    assert forks == []
    with pytest.raises(error) as child:
        run_within_budget(extract, data, name, max_chars=100, **BUDGET)
    assert len(forks) == 1
    assert (here.value.message, here.value.stage) == (child.value.message, child.value.stage)


def test_pdf_and_large_text_still_go_to_the_child(corpus: Path, forks: list[int]) -> None:
    pdf = (corpus / "pdf/text/pdflatex-4-pages.pdf").read_bytes()
    assert extract_within_budget(pdf, "a.pdf", ExtractBudget()) == extract(pdf, "a.pdf")
    assert len(forks) == 1
    # A PDF named like text is a PDF (content wins over the name): the child reads it.
    assert not in_process(pdf, "notes.txt")
    extract_within_budget(pdf, "notes.txt", ExtractBudget())
    assert len(forks) == 2
    # A text file over the in-process bound keeps the child's memory and time budget.
    big = b"word " * (IN_PROCESS_MAX_BYTES // 5 + 1)
    assert not in_process(big, "big.txt")
    with pytest.raises(DocumentTooLarge, match="the limit is 100"):
        extract_within_budget(big, "big.txt", ExtractBudget(max_chars=100))
    assert len(forks) == 3
