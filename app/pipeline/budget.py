"""Run text extraction under a time and memory budget, in a child process per document.

A hostile file can make a parser run for hours, allocate until the machine swaps, or crash the
interpreter (a C extension hitting a NULL). None of that may cost more than the one document, so
:func:`extract_within_budget` forks, and the child

- limits its memory to what it already holds plus ``extract_memory_mb`` (``RLIMIT_DATA`` and
  ``RLIMIT_AS``),
- limits its CPU time to ``extract_timeout_s`` plus a margin (``RLIMIT_CPU``), a backstop for when
  the parent cannot kill it,
- asks the kernel to kill it if the parent dies (``PR_SET_PDEATHSIG``, Linux),
- runs :func:`app.pipeline.extract.extract` and sends the outcome back through a pipe (pickle).

OCR runs inside the same budget: the child starts one Tesseract process per page, which dies with
the child (``PR_SET_PDEATHSIG``), may map at most ``extract_memory_mb`` of its own, and is killed
after ``ocr.page_timeout_s`` (app/pipeline/extract/ocr.py); the wall-clock limit covers them all.

The parent waits at most ``extract_timeout_s`` of wall-clock time, then kills the child.

Why ``os.fork`` and not :mod:`multiprocessing`: Celery's prefork pool children are daemonic, and
daemonic processes may not start ``multiprocessing`` children; a plain fork works anywhere and
hands the document's bytes to the child without copying them. The child calls no code that needs
other threads of the parent (it never touches the model, the database or the vector store) and
leaves with ``os._exit``, so no atexit handler or finaliser of the parent runs twice.

Where ``os.fork`` does not exist (Windows), extraction runs in-process without a budget.

Plain text and Markdown up to :data:`IN_PROCESS_MAX_BYTES` are extracted in the calling process,
without the child: their reader only decodes and normalises (app/pipeline/extract/text.py), in
time and memory linear in the file's size, so the budget has nothing to stop, and the fork (and
the copy-on-write faults it costs the parent's running threads) bought nothing. The result and
the errors are the same as from the child. Larger text files, and every other type, still go to
the child.

::

    outcome in the child            error raised in the parent (stage "extract")
    ─────────────────────────────── ───────────────────────────────────────────────────────────
    text extracted                  none: the ExtractedText is returned
    a DocvecError                   the same class and message
    MemoryError / near the limit    DocumentTooLarge "extraction needed more than N MiB of memory"
    still running at the deadline   DocumentTooLarge "extraction took longer than N s"
    killed by SIGXCPU / SIGKILL     DocumentTooLarge (CPU-time backstop / the kernel's OOM killer)
    killed by another signal        CorruptDocument "the document crashed the parser (SIGSEGV)"
    any other exception             PermanentError "internal error during extraction: ..."
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import logging
import math
import os
import pickle
import resource
import select
import signal
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app import errors
from app.errors import CorruptDocument, DocumentTooLarge, PermanentError
from app.pipeline.extract import ExtractedText, OcrOptions, detect_type, extract

if TYPE_CHECKING:
    from app.config import Settings

__all__ = [
    "IN_PROCESS_MAX_BYTES",
    "IN_PROCESS_TYPES",
    "ExtractBudget",
    "extract_within_budget",
    "in_process",
    "run_within_budget",
]

log = logging.getLogger(__name__)

STAGE = "extract"

#: Seconds of CPU time the child gets beyond the wall-clock budget before the kernel stops it:
#: the parent's kill normally comes first; this only matters if the parent is gone.
_CPU_MARGIN_S = 30
#: The child counts as out of memory when its peak resident size came this close to the budget:
#: libraries written in C (libxml2) report a failed allocation as a parse error of their own.
_NEAR_LIMIT_BYTES = 64 * 1024 * 1024
_HEADER = struct.Struct("!Q")
_READ_BYTES = 1024 * 1024
# How often the parent checks that the child is still alive while it waits for the result.
_POLL_S = 0.25
_PR_SET_PDEATHSIG = 1
_EXIT_OK = 0
_EXIT_UNREPORTED = 70  # EX_SOFTWARE: the child could not even report its failure

#: Types (:func:`~app.pipeline.extract.detect_type`'s names) extracted without the child, when
#: the file is at most :data:`IN_PROCESS_MAX_BYTES`.
IN_PROCESS_TYPES = frozenset({"text", "markdown"})
#: Largest text file extracted in-process. Reading one costs a transient 4-9x its size (the
#: bytes, the decoded text, the normalised copies, charset detection: 12 MiB at most for War and
#: Peace's 3.2 MB of ASCII, 20 MiB for Don Quijote's 2.2 MB of UTF-8, measured with
#: tracemalloc), which would lift the worker's peak RSS with the file's size; in the child it is
#: the child's. At 1 MiB that transient stays under ~10 MiB, and the file is ~1,300 chunks, some
#: 40 s of embedding on 2 cores, beside which the fork the larger files keep (tens of ms) is
#: nothing. Most text and Markdown documents are far smaller.
IN_PROCESS_MAX_BYTES = 1024 * 1024
#: Bytes :func:`~app.pipeline.extract.extract` gives :func:`~app.pipeline.extract.detect_type`.
_HEAD_BYTES = 4096


@dataclass(frozen=True, slots=True)
class ExtractBudget:
    """Limits for the extraction of one document.

    Attributes:
        timeout_s: wall-clock seconds; the child is killed after this.
        memory_mb: MiB of address space the child may add to what it inherited from the parent.
        max_pages: passed to :func:`~app.pipeline.extract.extract`.
        max_chars: passed to :func:`~app.pipeline.extract.extract`.
        ocr: passed to :func:`~app.pipeline.extract.extract`.
        pictures: passed to :func:`~app.pipeline.extract.extract` (the longest side of the page
            pictures an image model needs; None: no pictures). Not a setting: the pipeline sets
            it when the index version has an image model.
    """

    timeout_s: float = 300.0
    memory_mb: int = 2048
    max_pages: int = 5000
    max_chars: int = 20_000_000
    ocr: OcrOptions = dataclasses.field(default_factory=OcrOptions)
    pictures: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ExtractBudget:
        """The budget configured by ``extract_timeout_s``, ``extract_memory_mb``, ``max_pages``,
        ``max_document_chars`` and the ``ocr`` group."""
        return cls(
            timeout_s=settings.extract_timeout_s,
            memory_mb=settings.extract_memory_mb,
            max_pages=settings.max_pages,
            max_chars=settings.max_document_chars,
            ocr=OcrOptions.from_settings(settings),
        )


def extract_within_budget(
    data: bytes, file_name: str, budget: ExtractBudget | Settings
) -> ExtractedText:
    """:func:`~app.pipeline.extract.extract` in a child process bounded in time and memory; in
    this process for plain text and Markdown of at most :data:`IN_PROCESS_MAX_BYTES` (the same
    result and errors: see the module docstring).

    Args:
        data: the whole file.
        file_name: the original file name.
        budget: the limits, or the settings to read them from.

    Returns:
        The extracted text.

    Raises:
        DocumentTooLarge: over the time or memory budget, or over ``max_pages``/``max_chars``.
        PermanentError: whatever :func:`~app.pipeline.extract.extract` raises (same class), a
            parser crash (:class:`~app.errors.CorruptDocument`), or an unexpected failure.
    """
    if not isinstance(budget, ExtractBudget):
        budget = ExtractBudget.from_settings(budget)
    options: dict[str, Any] = {
        "max_pages": budget.max_pages,
        "max_chars": budget.max_chars,
        "ocr": budget.ocr,
        "pictures": budget.pictures,
    }
    if in_process(data, file_name):
        return _extract_here(data, file_name, options)
    result = run_within_budget(
        extract,
        data,
        file_name,
        timeout_s=budget.timeout_s,
        memory_mb=budget.memory_mb,
        **options,
    )
    assert isinstance(result, ExtractedText)
    return result


def in_process(data: bytes, file_name: str) -> bool:
    """Whether :func:`extract_within_budget` reads this file without the child: plain text or
    Markdown (as :func:`~app.pipeline.extract.detect_type` decides from the same head and name)
    of at most :data:`IN_PROCESS_MAX_BYTES`. A file the detection refuses goes to the child,
    which reports the refusal as it does for any file."""
    if len(data) > IN_PROCESS_MAX_BYTES:
        return False
    try:
        return detect_type(data[:_HEAD_BYTES], file_name) in IN_PROCESS_TYPES
    except errors.DocvecError:
        return False


def _extract_here(data: bytes, file_name: str, options: dict[str, Any]) -> ExtractedText:
    """:func:`~app.pipeline.extract.extract` in this process, its failures raised as the child's
    would be (see the module docstring's table).

    Raises:
        DocvecError: the one ``extract`` raised.
        DocumentTooLarge: out of memory.
        PermanentError: any other exception (a bug): an internal error.
    """
    try:
        return extract(data, file_name, **options)
    except errors.DocvecError:
        raise
    except MemoryError:
        raise DocumentTooLarge(
            "extraction ran out of memory; the document is too large to read", stage=STAGE
        ) from None
    except Exception as exc:
        raise PermanentError(
            f"internal error during extraction: {_describe(exc)}", stage=STAGE
        ) from exc


def run_within_budget(
    fn: Callable[..., Any],
    *args: Any,
    timeout_s: float,
    memory_mb: int,
    **kwargs: Any,
) -> Any:
    """Call ``fn(*args, **kwargs)`` in a forked child limited to ``timeout_s`` seconds of wall
    clock and ``memory_mb`` MiB of extra address space; return its (picklable) result.

    Raises:
        DocumentTooLarge: over either budget.
        DocvecError: the one ``fn`` raised (rebuilt from its class name, message and stage).
        CorruptDocument: the child died of a signal other than the budget's.
        PermanentError: ``fn`` raised something else, or the child vanished without a word.
    """
    if not hasattr(os, "fork"):  # pragma: no cover - Windows
        return fn(*args, **kwargs)
    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_fd)
        _child(write_fd, parent, fn, args, kwargs, timeout_s, memory_mb)
    os.close(write_fd)
    reaped = False
    try:
        payload, status = _collect(read_fd, pid, timeout_s)
        reaped = status is not None
        if payload is None:
            if status is None:
                raise DocumentTooLarge(
                    f"extraction took longer than {timeout_s:g} s; the document is too large "
                    "or too complex to read",
                    stage=STAGE,
                )
            raise _death_error(status, timeout_s, memory_mb)
        return _outcome(payload, memory_mb)
    finally:
        os.close(read_fd)
        if not reaped:
            _kill(pid)


# --------------------------------------------------------------------------------------------------
# Parent side
# --------------------------------------------------------------------------------------------------


def _collect(read_fd: int, pid: int, timeout_s: float) -> tuple[memoryview | None, int | None]:
    """Read the child's framed result until the deadline.

    Returns ``(payload, wait_status)``: the payload (None if the child sent none, or not in time)
    and the child's wait status (None while it still runs, i.e. the deadline passed).
    """
    deadline = time.monotonic() + timeout_s
    buffer = bytearray()
    poller = select.poll()
    poller.register(read_fd, select.POLLIN)
    while True:
        payload = _framed(buffer)
        if payload is not None:
            return payload, _reap(pid, deadline)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None, None
        if poller.poll(min(remaining, _POLL_S) * 1000):
            piece = os.read(read_fd, _READ_BYTES)
            if piece:
                buffer += piece
                continue
            # End of file: the child closed its end by exiting.
            status = _reap(pid, deadline)
        else:
            # Also watch the child itself: a fork made by another thread of this process at the
            # same time holds a copy of the write end, and then no end of file comes.
            status = _reap(pid, 0.0)
        if status is not None:
            while poller.poll(0) and (piece := os.read(read_fd, _READ_BYTES)):
                buffer += piece
            return _framed(buffer), status


def _framed(buffer: bytearray) -> memoryview | None:
    """The payload once the buffer holds all of it (a length header, then the pickle)."""
    if len(buffer) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack_from(buffer)
    if len(buffer) < _HEADER.size + size:
        return None
    return memoryview(buffer)[_HEADER.size : _HEADER.size + size]


def _reap(pid: int, deadline: float) -> int | None:
    """The child's wait status once it has exited, waiting until ``deadline`` at most (a
    ``time.monotonic()`` value; 0 checks once); None if it still runs."""
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # pragma: no cover - someone else reaped it (a SIGCHLD handler)
            return 0
        if done:
            return status
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.005)


def _kill(pid: int) -> None:
    """Kill and reap the child (idempotent)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:  # pragma: no cover - already reaped elsewhere
        return
    with contextlib.suppress(ChildProcessError):  # reaped by someone else
        os.waitpid(pid, 0)


def _outcome(payload: memoryview, memory_mb: int) -> Any:
    kind, *rest = pickle.loads(payload)
    if kind == "ok":
        return rest[0]
    if kind == "memory":
        raise _memory_error(memory_mb)
    if kind == "error":
        class_name, message, stage = rest
        cls = getattr(errors, class_name, None)
        if isinstance(cls, type) and issubclass(cls, errors.DocvecError):
            raise cls(message, stage=stage or STAGE)
        raise PermanentError(message, stage=stage or STAGE)  # pragma: no cover
    (detail,) = rest
    raise PermanentError(f"internal error during extraction: {detail}", stage=STAGE)


def _memory_error(memory_mb: int) -> DocumentTooLarge:
    return DocumentTooLarge(
        f"extraction needed more than {memory_mb} MiB of memory; the document is too large or "
        "too complex to read",
        stage=STAGE,
    )


def _death_error(status: int, timeout_s: float, memory_mb: int) -> PermanentError:
    """The error for a child that exited without sending a result."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU:
            return DocumentTooLarge(
                f"extraction used more than {timeout_s:g} s of CPU time; the document is too "
                "large or too complex to read",
                stage=STAGE,
            )
        if sig == signal.SIGKILL:
            # Not ours (we only kill after the deadline): the kernel's OOM killer, or the CPU
            # limit's hard stop.
            return _memory_error(memory_mb)
        name = signal.Signals(sig).name if sig in signal.valid_signals() else str(sig)
        return CorruptDocument(f"the document crashed the parser ({name})", stage=STAGE)
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else status
    return PermanentError(
        f"internal error during extraction: the extraction process exited with status {code} "
        "without a result",
        stage=STAGE,
    )


# --------------------------------------------------------------------------------------------------
# Child side
# --------------------------------------------------------------------------------------------------


def _child(
    write_fd: int,
    parent: int,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    timeout_s: float,
    memory_mb: int,
) -> None:
    code = _EXIT_UNREPORTED
    try:
        # The parent's handlers (Celery's SIGTERM/SIGUSR1, uvicorn's SIGINT) are not ours.
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        _die_with(parent)
        limit = _limit_resources(timeout_s, memory_mb)
        try:
            result: tuple[Any, ...] = ("ok", fn(*args, **kwargs))
        except MemoryError:
            result = ("memory",)
        except errors.DocvecError as exc:
            result = (
                ("memory",)
                if _near_limit(limit)
                else ("error", type(exc).__name__, exc.message, exc.stage)
            )
        except BaseException as exc:  # a bug, or a library error extract did not wrap
            result = ("memory",) if _near_limit(limit) else ("crash", _describe(exc))
        try:
            payload = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        except MemoryError:
            payload = pickle.dumps(("memory",))
        # Header and payload apart: concatenating would copy a payload of up to hundreds of MB.
        _write_all(write_fd, _HEADER.pack(len(payload)))
        _write_all(write_fd, payload)
        code = _EXIT_OK
    finally:
        os._exit(code)


def _die_with(parent: int) -> None:
    """Have the kernel kill this process when its parent dies (Linux); no-op elsewhere."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:  # pragma: no cover
        return
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(_EXIT_UNREPORTED)


def _limit_resources(timeout_s: float, memory_mb: int) -> int:
    """Apply the CPU-time and memory limits; return the peak RSS (bytes) the memory budget
    allows, for :func:`_near_limit`.

    Memory is limited twice, each time to what the process holds now plus ``memory_mb``:
    ``RLIMIT_DATA`` counts private writable memory, including memory committed later inside
    regions that were only reserved when the limit was set (glibc's malloc arenas of the parent's
    threads, which ``RLIMIT_AS`` counted at reservation time); ``RLIMIT_AS`` bounds the address
    space as a whole. Free memory inside the parent's heap is reused without counting: the budget
    is approximate by that much (tens of MB).
    """
    cpu = math.ceil(timeout_s) + _CPU_MARGIN_S
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    budget = memory_mb * 1024 * 1024
    for limit, field in ((resource.RLIMIT_DATA, "VmData"), (resource.RLIMIT_AS, "VmSize")):
        held = _status_bytes(field)
        if held is None:  # pragma: no cover - no /proc
            continue
        _, hard = resource.getrlimit(limit)
        soft = held + budget if hard == resource.RLIM_INFINITY else min(held + budget, hard)
        resource.setrlimit(limit, (soft, hard))
    return _peak_rss() + budget


def _status_bytes(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmData``, ``VmSize``), in bytes."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - no /proc
        return None
    return None  # pragma: no cover


def _peak_rss() -> int:
    """Peak resident memory of this process, bytes (Linux reports kB; it starts at the parent's
    resident size at the fork)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _near_limit(allowed_peak: int) -> bool:
    return _peak_rss() >= allowed_peak - _NEAR_LIMIT_BYTES


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:500]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
