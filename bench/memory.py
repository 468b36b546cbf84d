"""Peak RSS while ingesting the corpus' longest documents, one fresh process per document.

    .venv/bin/python bench/memory.py [--quick] [--backend B]

Each document is ingested by a child process exactly as ``docvec ingest FILE`` would (migrate,
store, ``process_document`` on the embedded defaults in a temporary data dir). The child reports
its resident memory once the model is loaded and warm ("baseline": interpreter, libraries, model)
and its peak (``ru_maxrss``) at the end; the difference is what the document itself cost. The
issue's bar is a peak under 1.5 GiB for any single corpus document.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common

common.setup_environment()

LIMIT_MIB = 1536
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


def child(path: Path, backend: str | None) -> None:
    """Ingest ``path`` into a fresh data dir and print one JSON line of figures."""
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
        settings = Settings(_env_file=None, data_dir=Path(tmp), embedding=emb)  # type: ignore[call-arg]
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
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.backend)
        return

    before = common.machine()
    rows = []
    results = {}
    for rel in QUICK if args.quick else LONGEST:
        path = common.CORPUS / rel
        size_mb = path.stat().st_size / 1e6
        common.console.print(f"  {rel} ({size_mb:.1f} MB) ...")
        cmd = [sys.executable, __file__, "--child", str(path)]
        if args.backend:
            cmd += ["--backend", args.backend]
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
    backend = next((r.get("backend") for r in results.values() if "backend" in r), None)
    common.console.print(
        common.table(
            f"peak RSS per document, one process each (backend {backend})",
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
    note = common.load_note(before, after)
    common.console.print(f"[dim]{note}[/dim]")
    path = common.save(
        "memory",
        {
            "machine": before,
            "load_after": after["load_avg_1m"],
            "note": note,
            "limit_mib": LIMIT_MIB,
            "results": results,
        },
    )
    common.console.print(f"[dim]written {path.relative_to(common.REPO)}[/dim]")


if __name__ == "__main__":
    main()
