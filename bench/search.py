"""Filtered top-5 search latency (p50/p95) and upsert rate of the vector stores at 10k and 100k.

    .venv/bin/python bench/search.py [--quick] [--sizes 10000,100000] [--queries Q]

Stores, each through its docvec class: the embedded default, Qdrant Edge (``EdgeStore``, Qdrant's
Rust engine in-process; ``optimize()`` runs after the upserts, as the CLI runs it after an ingest,
and the time it takes is shown), qdrant-client's local mode (``QdrantStore`` on a folder,
``DOCVEC_QDRANT_LOCAL_ENGINE=client``, for comparison) and pgvector (``PgVectorStore`` on a
throwaway PostgreSQL from the ``pgserver`` package, if installed).

Points: 384-dim unit vectors drawn around 2,000 random centres (like chunk embeddings, they
cluster), spread over 10 projects; payload as docvec writes it. Each store is filled up to the
first size, measured, then filled up to the next. Every query is a perturbed copy of a stored
point of one project and searches that project only (docvec's ``project_id`` filter); recall@5
is against exact brute force over that project's points. A store gets at most ``--budget-s``
seconds of queries per size (at least 5 queries), so a slow one does not stall the run.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common

common.setup_environment()

import numpy as np  # noqa: E402

from app.vectorstore import Point  # noqa: E402

DIM = 384
PROJECTS = 10
TOP_K = 5

Search = Callable[[uuid.UUID, list[float]], list[uuid.UUID]]


class Dataset:
    """Clustered unit vectors with project and document ids, generated deterministically."""

    def __init__(self, n: int, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        centres = rng.standard_normal((2000, DIM)).astype(np.float32)
        which = rng.integers(0, len(centres), n)
        vectors = centres[which] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32)
        self.vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        self.projects = [uuid.UUID(int=rng.integers(1, 2**62).item()) for _ in range(PROJECTS)]
        self.project_of = rng.integers(0, PROJECTS, n)
        self.ids = [uuid.UUID(int=int(i) + 1) for i in range(n)]
        self.rng = rng

    def points(self, start: int, end: int) -> list[Point]:
        return [
            Point(
                id=self.ids[i],
                vector=self.vectors[i].tolist(),
                project_id=self.projects[self.project_of[i]],
                document_id=uuid.UUID(int=(i // 40) + 1),
                chunk_index=i % 40,
                file_name=f"doc-{i // 40}.txt",
            )
            for i in range(start, end)
        ]

    def queries(self, n_points: int, count: int) -> list[tuple[int, np.ndarray]]:
        """(project index, query vector) pairs near stored points among the first ``n_points``."""
        picks = self.rng.integers(0, n_points, count)
        out = []
        for i in picks:
            q = self.vectors[i] + 0.3 * self.rng.standard_normal(DIM).astype(np.float32) / 10
            out.append((int(self.project_of[i]), q / np.linalg.norm(q)))
        return out

    def exact(self, n_points: int, project: int, q: np.ndarray) -> set[uuid.UUID]:
        mask = np.flatnonzero(self.project_of[:n_points] == project)
        scores = self.vectors[mask] @ q
        top = mask[np.argsort(-scores)[:TOP_K]]
        return {self.ids[i] for i in top}


# ---- stores -------------------------------------------------------------------------------------


@contextlib.contextmanager
def qdrant_local(folder: Path) -> Iterator[tuple[Callable[[list[Point]], None], Search, Any]]:
    from app.vectorstore.qdrant import QdrantStore

    store = QdrantStore(collection="bench", path=folder / "qdrant")
    store.ensure_collection(DIM)

    def search(project: uuid.UUID, q: list[float]) -> list[uuid.UUID]:
        return [h.id for h in store.search(project, q, top_k=TOP_K)]

    try:
        yield store.upsert, search, None
    finally:
        store.close()


@contextlib.contextmanager
def pgvector(folder: Path) -> Iterator[tuple[Callable[[list[Point]], None], Search, Any]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(folder / "pgdata", cleanup_mode="stop")
    from app.vectorstore.pgvector import PgVectorStore

    try:
        server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
        url = server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
        store = PgVectorStore(url=url, table="bench")
        store.ensure_collection(DIM)

        def search(project: uuid.UUID, q: list[float]) -> list[uuid.UUID]:
            return [h.id for h in store.search(project, q, top_k=TOP_K)]

        try:
            yield store.upsert, search, None
        finally:
            store.close()
    finally:
        server.cleanup()


@contextlib.contextmanager
def qdrant_edge(folder: Path) -> Iterator[tuple[Callable[[list[Point]], None], Search, Any]]:
    from app.vectorstore.edge import EdgeStore

    store = EdgeStore(collection="bench", path=folder / "edge")
    store.ensure_collection(DIM)

    def search(project: uuid.UUID, q: list[float]) -> list[uuid.UUID]:
        return [h.id for h in store.search(project, q, top_k=TOP_K)]

    try:
        yield store.upsert, search, store.optimize
    finally:
        store.close()


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


STORES: dict[str, tuple[Callable[[Path], Any], str | None]] = {
    "qdrant-edge (embedded default)": (qdrant_edge, "qdrant_edge"),
    "qdrant-client local mode": (qdrant_local, None),
    "pgvector HNSW": (pgvector, "pgserver"),
}


def bench_store(
    make: Callable[[Path], Any],
    data: Dataset,
    sizes: list[int],
    queries: int,
    budget_s: float,
) -> list[dict[str, Any]]:
    out = []
    folder = Path(tempfile.mkdtemp(prefix="docvec-bench-search-"))
    try:
        with make(folder) as (upsert, search, optimize):
            filled = 0
            for size in sizes:
                t = time.perf_counter()
                for start in range(filled, size, 2000):
                    upsert(data.points(start, min(size, start + 2000)))
                upsert_s = time.perf_counter() - t
                added = size - filled
                filled = size
                optimize_s = None
                if optimize is not None:
                    optimize_s, _ = common.timed(optimize)
                lat: list[float] = []
                hits = 0
                spent = 0.0
                for project, q in data.queries(size, queries):
                    if spent > budget_s and len(lat) >= 5:
                        break
                    secs, found = common.timed(
                        lambda p=project, q=q: search(data.projects[p], q.tolist())
                    )
                    lat.append(secs * 1000)
                    spent += secs
                    hits += len(set(found) & data.exact(size, project, q))
                out.append(
                    {
                        "points": size,
                        "upserts_per_s": added / upsert_s if upsert_s else None,
                        "optimize_s": optimize_s,
                        "queries": len(lat),
                        "p50_ms": common.percentile(lat, 50),
                        "p95_ms": common.percentile(lat, 95),
                        "recall_at_5": hits / (TOP_K * len(lat)),
                    }
                )
                common.console.print(f"    {size:>7} points: p95 {out[-1]['p95_ms']:.1f} ms")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2k and 10k points, 20 queries")
    parser.add_argument("--sizes", default=None, help="comma-separated point counts")
    parser.add_argument("--queries", type=int, default=None, help="queries per size (default 50)")
    parser.add_argument("--budget-s", type=float, default=60.0, help="query seconds per size")
    parser.add_argument("--stores", default=None, help="comma-separated substrings of store names")
    args = parser.parse_args()
    sizes = [
        int(s) for s in (args.sizes or ("2000,10000" if args.quick else "10000,100000")).split(",")
    ]
    queries = args.queries or (20 if args.quick else 50)

    before = common.machine()
    data = Dataset(max(sizes))
    rows = []
    results: dict[str, Any] = {}
    for name, (make, module) in STORES.items():
        if args.stores and not any(s in name for s in args.stores.split(",")):
            continue
        if module and not _importable(module):
            results[name] = {"skipped": f"{module} not installed"}
            rows.append([name, None, None, None, None, None, None, f"skipped: {module} missing"])
            continue
        common.console.print(f"  {name}")
        try:
            found = bench_store(make, data, sizes, queries, args.budget_s)
        except Exception as exc:  # one broken store must not lose the others' figures
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            rows.append([name, None, None, None, None, None, None, f"error: {exc}"[:80]])
            continue
        results[name] = found
        for r in found:
            rows.append(
                [
                    name,
                    r["points"],
                    r["upserts_per_s"],
                    r["optimize_s"],
                    r["p50_ms"],
                    r["p95_ms"],
                    r["recall_at_5"],
                    "yes" if r["p95_ms"] < 20 else "no",
                ]
            )
    after = common.machine()
    common.console.print(
        common.table(
            f"filtered top-{TOP_K} search ({PROJECTS} projects, filter on one)",
            [
                "store",
                "points",
                "upserts/s",
                "optimize s",
                "p50 ms",
                "p95 ms",
                "recall@5",
                "p95 < 20 ms",
            ],
            rows,
        )
    )
    note = common.load_note(before, after)
    common.console.print(f"[dim]{note}[/dim]")
    path = common.save(
        "search",
        {
            "machine": before,
            "load_after": after["load_avg_1m"],
            "note": note,
            "params": {"sizes": sizes, "queries": queries, "budget_s": args.budget_s},
            "results": results,
        },
    )
    common.console.print(f"[dim]written {path.relative_to(common.REPO)}[/dim]")


if __name__ == "__main__":
    main()
