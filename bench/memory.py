"""Peak RSS while ingesting the corpus' longest documents, one fresh process per document.

    .venv/bin/python bench/memory.py [--quick] [--backend B] [--store edge|pgvector]

Each document is ingested by a child process exactly as ``docvec ingest FILE`` would (migrate,
store, ``process_document`` on the embedded defaults in a temporary data dir). The child reports
its resident memory once the model is loaded and warm ("baseline": interpreter, libraries, model)
and its peak (``ru_maxrss``) at the end; the difference is what the document itself cost. The
issue's bar is a peak under 1.5 GiB for any single corpus document.

The growth per 1,000 chunks is the least-squares slope of "peak - baseline" against the chunk
count over the documents measured (at least two): what each further chunk costs on top of the
fixed cost of running at all (the inference engine's buffers, the extraction child's pipe). The
issue's bar for it is 5 MiB.

``--store edge`` (the default, as ``docvec ingest``) keeps the vector store's engine in the
process, so the figures include the pages of the collection it builds (Qdrant Edge's
write-ahead log, vector and payload storage, in-memory indexes). ``--store pgvector`` writes the
points to a PostgreSQL started for the run (pgserver, as the tests do), whose memory is its own:
what is left is docvec's, as in a worker writing to a Qdrant or PostgreSQL server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common

common.setup_environment()

LIMIT_MIB = 1536
#: The issue's bar for the peak's growth per 1,000 chunks of one document.
GROWTH_LIMIT_MIB = 5.0
LONGEST = (
    "docx/handbook-872p.docx",
    "pdf/text/GeoTopo-komprimiert.pdf",
    "pdf/text/GeoBase_NHNC1_Data_Model_UML_EN.pdf",
    "text/txt/book-war-and-peace-1225p.txt",
    "text/txt/es/pg2000_don_quijote.txt",
)
QUICK = ("pdf/text/GeoTopo-komprimiert.pdf", "docx/handbook-872p.docx")


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def growth_per_1000(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of ``(chunks, peak - baseline MiB)`` points, in MiB per 1,000 chunks;
    None with fewer than two distinct chunk counts."""
    if len({c for c, _ in points}) < 2:
        return None
    n = len(points)
    mean_c = sum(c for c, _ in points) / n
    mean_m = sum(m for _, m in points) / n
    num = sum((c - mean_c) * (m - mean_m) for c, m in points)
    den = sum((c - mean_c) ** 2 for c, _ in points)
    return 1000 * num / den


def child(path: Path, backend: str | None, pgvector_url: str | None, table: str) -> None:
    """Ingest ``path`` into a fresh data dir (points into ``table`` at ``pgvector_url`` if
    given, else the embedded store) and print one JSON line of figures."""
    import logging

    from app import services
    from app.config import EmbeddingSettings, Settings
    from app.db import migrate as db_migrate
    from app.embeddings.local import LocalProvider
    from app.pipeline.process import process_document
    from app.runtime import Runtime

    logging.basicConfig(level=logging.ERROR)
    emb = EmbeddingSettings(**({"backend": backend} if backend else {}))
    with tempfile.TemporaryDirectory(prefix="docvec-bench-mem-") as tmp:
        store: dict[str, object] = (
            {"vector_store": "pgvector", "pgvector_url": pgvector_url, "collection": table}
            if pgvector_url
            else {}
        )
        settings = Settings(_env_file=None, data_dir=Path(tmp), embedding=emb, **store)  # type: ignore[call-arg]
        db_migrate.upgrade(settings.sqlalchemy_url)
        provider = LocalProvider(settings.embedding)
        provider.embed_query("warm up")
        rt = Runtime(settings, provider=provider)
        rt.ensure_collection()
        baseline = _rss_mib()
        t = time.perf_counter()
        with rt.sessions() as s:
            project = services.get_or_create_project(s, name="bench")
            r = services.add_document(
                s, project=project, storage=rt.storage, file_name=path.name, path=path
            )
            s.commit()
            doc_id, generation = r.document.id, r.document.generation
        result = process_document(rt, doc_id, generation)
        seconds = time.perf_counter() - t
        rt.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(
        json.dumps(
            {
                "outcome": str(result.outcome),
                "error": result.error,
                "chunks": result.chunks,
                "seconds": seconds,
                "baseline_mib": baseline,
                "peak_mib": peak,
                "backend": provider.backend,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the DOCX handbook and GeoTopo PDF")
    parser.add_argument("--backend", default=None, help="local backend (default: the setting's)")
    parser.add_argument(
        "--store",
        choices=("edge", "pgvector"),
        default="edge",
        help="edge: the embedded default, in the process; pgvector: a PostgreSQL of its own",
    )
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--pgvector-url", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--table", default="docvec_chunks", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.backend, args.pgvector_url, args.table)
        return

    with contextlib.ExitStack() as stack:
        url = stack.enter_context(_postgres()) if args.store == "pgvector" else None
        run(args, url)


@contextlib.contextmanager
def _postgres() -> Iterator[str]:
    """A PostgreSQL with pgvector in a temporary folder for the run (pgserver, as
    tests/plugins/pgvector_server.py starts it); its SQLAlchemy URL."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs' RuntimeDirWarning under root
        import pgserver

        root = Path(tempfile.mkdtemp(prefix="docvec-bench-pg-"))
        server = pgserver.get_server(root / "pgdata", cleanup_mode="stop")
    try:
        server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
        yield server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def run(args: argparse.Namespace, pgvector_url: str | None) -> None:
    before = common.machine()
    rows = []
    results = {}
    for i, rel in enumerate(QUICK if args.quick else LONGEST):
        path = common.CORPUS / rel
        size_mb = path.stat().st_size / 1e6
        common.console.print(f"  {rel} ({size_mb:.1f} MB) ...")
        cmd = [sys.executable, __file__, "--child", str(path)]
        if args.backend:
            cmd += ["--backend", args.backend]
        if pgvector_url:
            cmd += ["--pgvector-url", pgvector_url, "--table", f"bench_memory_{i}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            results[rel] = {"error": proc.stderr[-2000:]}
            rows.append([rel, size_mb, None, None, None, None, None, "child failed"])
            continue
        r = json.loads(lines[-1])
        results[rel] = r
        rows.append(
            [
                rel,
                size_mb,
                r["chunks"],
                r["seconds"],
                r["baseline_mib"],
                r["peak_mib"],
                r["peak_mib"] - r["baseline_mib"],
                ("yes" if r["peak_mib"] < LIMIT_MIB else "no")
                + ("" if r["outcome"] == "succeeded" else f" ({r['outcome']})"),
            ]
        )
    after = common.machine()
    measured = [
        (int(r["chunks"]), float(r["peak_mib"]) - float(r["baseline_mib"]))
        for r in results.values()
        if r.get("outcome") == "succeeded"
    ]
    growth = growth_per_1000(measured)
    backend = next((r.get("backend") for r in results.values() if "backend" in r), None)
    common.console.print(
        common.table(
            f"peak RSS per document, one process each (backend {backend}, store {args.store})",
            [
                "document",
                "MB",
                "chunks",
                "seconds",
                "baseline MiB",
                "peak MiB",
                "peak - baseline",
                f"< {LIMIT_MIB} MiB",
            ],
            rows,
        )
    )
    if growth is not None:
        verdict = "meets" if growth <= GROWTH_LIMIT_MIB else "misses"
        common.console.print(
            f"peak growth: [bold]{growth:.1f} MiB per 1,000 chunks[/bold] (least-squares slope "
            f"over {len(measured)} documents; {verdict} the {GROWTH_LIMIT_MIB:g} MiB bar)"
        )
    note = common.load_note(before, after)
    common.console.print(f"[dim]{note}[/dim]")
    path = common.save(
        "memory" if args.store == "edge" else f"memory-{args.store}",
        {
            "machine": before,
            "load_after": after["load_avg_1m"],
            "note": note,
            "store": args.store,
            "limit_mib": LIMIT_MIB,
            "growth_mib_per_1000_chunks": growth,
            "growth_limit_mib": GROWTH_LIMIT_MIB,
            "results": results,
        },
    )
    common.console.print(f"[dim]written {path.relative_to(common.REPO)}[/dim]")


if __name__ == "__main__":
    main()
