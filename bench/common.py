"""What the bench scripts share: corpus paths, the machine's description, result files, tables.

Every script measures the figures it compares in one run, in one process where it can, and
interleaves the contenders round by round so that a machine shared with other work slows them
alike; the ratios are medians of per-round ratios. Results go to ``bench/results/NAME.json``
(gitignored) with the machine's load average before and after, so a figure taken on a busy
machine says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("DOCVEC_BENCH_CORPUS", REPO.parent / "shared" / "data" / "corpus"))
RESULTS = REPO / "bench" / "results"
_TIKTOKEN = REPO.parent / "shared" / "data" / "tiktoken"

#: Wide enough for the tables when the output is a file or a pipe (rich would use 80 columns).
console = Console() if sys.stdout.isatty() else Console(width=150)


def setup_environment() -> None:
    """Offline defaults every script needs (as the Makefile and the tests set them)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if _TIKTOKEN.is_dir():
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(_TIKTOKEN))


def corpus_files(*, exclude: Iterable[str] = ()) -> list[Path]:
    """Every document of the corpus (not its licenses or manifest), sorted, minus ``exclude``."""
    if not CORPUS.is_dir():
        sys.exit(f"corpus not found at {CORPUS} (set DOCVEC_BENCH_CORPUS)")
    skip = set(exclude)
    return sorted(
        p
        for p in CORPUS.rglob("*")
        if p.is_file()
        and p.parts[len(CORPUS.parts)] != "licenses"
        and p.name != "MANIFEST.md"
        and str(p.relative_to(CORPUS)) not in skip
    )


def machine() -> dict[str, Any]:
    """CPU, cores, memory and the current load average."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    with contextlib.suppress(ValueError, OSError):
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "python": platform.python_version(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def load_note(before: dict[str, Any], after: dict[str, Any]) -> str:
    """A line saying how busy the machine was (load average vs cores)."""
    cores = before.get("cores") or 1
    worst = max(before["load_avg_1m"], after["load_avg_1m"])
    state = "idle" if worst < 0.5 * cores else "busy" if worst > cores else "partly busy"
    if state == "busy":
        state += ": other work shared the CPU, figures are slower than on an idle machine"
    return (
        f"{before['cpu']}, {cores} cores; load average {before['load_avg_1m']} -> "
        f"{after['load_avg_1m']} ({state})"
    )


def save(name: str, data: dict[str, Any]) -> Path:
    """Write ``bench/results/NAME.json`` and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    data = {"bench": name, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **data}
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", "utf-8")
    return path


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    """A rich table, numbers right-aligned."""
    t = Table(title=title, title_justify="left")
    materialised = [list(r) for r in rows]
    for i, col in enumerate(columns):
        numeric = all(isinstance(r[i], int | float) for r in materialised if r[i] is not None)
        t.add_column(col, justify="right" if numeric and materialised else "left")
    for r in materialised:
        t.add_row(*(fmt(v) for v in r))
    return t


def fmt(value: Any) -> str:
    """Numbers with sensible precision, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds ``fn()`` took, and what it returned."""
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)
