"""Building an index version (re-embedding the chunk text in SQL) against the original ingest, and
search latency while the build runs, in one process.

    .venv/bin/python bench/index_versions.py [--quick] [--queries Q]

1. Ingest a document set from the corpus as ``docvec ingest`` does (``process_many`` on the
   embedded defaults: SQLite, Qdrant Edge, the local model), timed.
2. Search latency with nothing else running: ``Q`` hybrid queries (p50/p95).
3. Create index version 2 with the same model and another document prefix (a new index by the
   issue's rules: the vectors change, the chunks do not) and build it with ``run_build`` — the
   chunk text is read from SQL, nothing is extracted — while a thread runs the same queries
   against the active version 1, one every 0.1 s; build time, search latency during the build,
   errors.

Ratios: build ÷ ingest (both embed the same chunks with the same model; the ingest also reads,
extracts, chunks and writes rows), search p50 during ÷ before. ``--quick``: the 12 English
FastAPI/command-line Markdown pages; default: every corpus text, Markdown and DOCX document but
the two novels.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common

common.setup_environment()

from app import indexes, services  # noqa: E402
from app.config import Settings  # noqa: E402
from app.db import migrate  # noqa: E402
from app.pipeline.build import run_build  # noqa: E402
from app.pipeline.ingest import process_many  # noqa: E402
from app.runtime import Runtime  # noqa: E402

QUERIES = [
    "How do I run FastAPI in a Docker container?",
    "What is the WebSocket opening handshake?",
    "DNS message header format",
    "percent-encoding of reserved characters in a URI",
    "dependency injection in path operations",
    "how are query parameters declared",
]


def _files(quick: bool) -> list[Path]:
    files = common.corpus_files()
    if quick:
        return [p for p in files if "/md/en/" in str(p) and p.suffix == ".md"][:12]
    return [
        p
        for p in files
        if p.suffix in (".md", ".txt", ".docx")
        and "novel" not in str(p)
        and "war_and_peace" not in p.name.lower()
        and "/edge_cases/" not in str(p)
    ]


def _search_once(rt: Runtime, query: str) -> float:
    t = time.perf_counter()
    with rt.sessions() as s:
        hits = rt.search(s, project=services.find_project(s, "bench"), query=query, top_k=5)
    if not hits:
        raise RuntimeError(f"no hit for {query!r}")
    return (time.perf_counter() - t) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--queries", type=int, default=60)
    args = ap.parse_args()
    before = common.machine()
    files = _files(args.quick)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(_env_file=None, data_dir=Path(tmp) / "data")  # type: ignore[call-arg]
        migrate.upgrade(settings.sqlalchemy_url)
        rt = Runtime(settings)
        try:
            rt.provider.embed_query("warm-up")  # the model loaded before anything is timed
            with rt.sessions() as s:
                project = services.get_or_create_project(s, name="bench")
                jobs = []
                for p in files:
                    added = services.add_document(
                        s, project=project, storage=rt.storage, file_name=p.name, path=p
                    )
                    jobs.append((added.document.id, added.document.generation))
                s.commit()
            t = time.perf_counter()
            results = list(process_many(rt, jobs))
            rt.vector_store.optimize()
            ingest_s = time.perf_counter() - t
            chunks = sum(r.chunks for r in results)
            ok = sum(1 for r in results if r.outcome == "succeeded")

            idle = [_search_once(rt, QUERIES[i % len(QUERIES)]) for i in range(args.queries)]

            with rt.sessions() as s:
                project = services.find_project(s, "bench")
                spec, follows = indexes.spec_for(settings, document_prefix="passage: ")
                version_id = indexes.create_version(
                    s, project=project, spec=spec, settings=settings, follows_settings=follows
                ).id
                s.commit()
            during: list[float] = []
            errors: list[str] = []
            stop = threading.Event()

            def searcher() -> None:
                i = 0
                while not stop.is_set():
                    try:
                        during.append(_search_once(rt, QUERIES[i % len(QUERIES)]))
                    except Exception as exc:
                        errors.append(repr(exc))
                    i += 1
                    time.sleep(0.1)  # a steady ~10 queries/s, not a CPU hog beside the build

            thread = threading.Thread(target=searcher, daemon=True)
            thread.start()
            t = time.perf_counter()
            built = run_build(rt, version_id, keep_versions=1)
            build_s = time.perf_counter() - t
            stop.set()
            thread.join()
            after_swap = [_search_once(rt, QUERIES[i % len(QUERIES)]) for i in range(10)]
        finally:
            rt.close()
    after = common.machine()
    p50_idle, p50_during = common.median(idle), common.median(during)
    rows = [
        ("documents / chunks", f"{ok} of {len(files)} / {chunks}"),
        ("ingest, s", round(ingest_s, 1)),
        ("build of version 2 from SQL, s", round(build_s, 1)),
        ("build ÷ ingest", round(build_s / ingest_s, 2)),
        ("search p50 / p95 before, ms", f"{p50_idle:.1f} / {common.percentile(idle, 95):.1f}"),
        (
            "search p50 / p95 during the build, ms",
            f"{p50_during:.1f} / {common.percentile(during, 95):.1f}",
        ),
        ("search p50 during ÷ before", round(p50_during / p50_idle, 2)),
        ("searches during the build / errors", f"{len(during)} / {len(errors)}"),
        ("search p50 after the swap, ms", round(common.median(after_swap), 1)),
        ("version 2 state", str(built.state)),
    ]
    common.console.print(common.table("index version build", ["measure", "value"], rows))
    common.console.print(common.load_note(before, after))
    common.save(
        "index_versions",
        {
            "machine": before,
            "load_after": after,
            "documents": len(files),
            "chunks": chunks,
            "ingest_s": ingest_s,
            "build_s": build_s,
            "search_ms_idle": idle,
            "search_ms_during": during,
            "errors": errors,
        },
    )


if __name__ == "__main__":
    main()
