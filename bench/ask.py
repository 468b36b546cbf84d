"""Latency of ``docvec ask`` on the embedded defaults: retrieval vs generation, warm and cold.

    .venv/bin/python bench/ask.py [--quick] [--rounds 5] [--top-k 8] [--data-dir DIR --project P]

Without ``--data-dir`` it ingests four corpus documents (RFC 3986, RFC 1035, two FastAPI pages;
347 chunks with the default chunking) into a temporary data dir first. Then, in one process with
the local model loaded (as the API runs), it asks eight questions ``--rounds`` times through the
answer service — retrieval (query embedding + search + chunk texts from SQL) and generation
(prompt packing + the configured chat provider + the citation filter) timed apart — for each
search mode. Last, the wall time of whole ``docvec ask`` processes (start, model load, store open,
answer), which is what a user at a terminal waits for. ``--quick`` (``make bench-quick``): the two
FastAPI pages only, one round and one ``docvec ask`` process.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common

common.setup_environment()

from app import answers, services  # noqa: E402
from app.config import Settings  # noqa: E402
from app.db import migrate  # noqa: E402
from app.pipeline.process import process_document  # noqa: E402
from app.runtime import Runtime  # noqa: E402
from app.vectorstore import SEARCH_MODES, SearchMode  # noqa: E402

DOCS = [
    "text/txt/rfc3986.txt",
    "text/txt/rfc1035.txt",
    "text/md/en/fastapi__features.md",
    "text/md/en/fastapi__advanced__behind-a-proxy.md",
]
QUESTIONS = [
    "How is a percent-encoded octet written in a URI?",
    "Which characters are reserved in a URI?",
    "How are relative references resolved against a base URI?",
    "What is the maximum length of a DNS label?",
    "What does the AA bit of a DNS message header mean?",
    "Does FastAPI support WebSockets?",
    "How do I run FastAPI behind a proxy with a path prefix?",
    "What is root_path used for?",
]


def ingest(rt: Runtime, project: str, docs: list[str]) -> int:
    with rt.sessions() as s:
        proj = services.get_or_create_project(s, name=project)
        ids = [
            services.add_document(
                s,
                project=proj,
                storage=rt.storage,
                file_name=Path(rel).name,
                pieces=[(common.CORPUS / rel).read_bytes()],
            ).document.id
            for rel in docs
        ]
        s.commit()
    chunks = 0
    for doc_id in ids:
        chunks += process_document(rt, doc_id).chunks or 0
    rt.vector_store.optimize()
    return chunks


def ask(rt: Runtime, project: str, question: str, mode: SearchMode, top_k: int) -> Any:
    with rt.sessions() as s:
        project_id = services.find_project(s, project).id

    def retrieve(
        q: str, k: int, m: SearchMode, threshold: float | None
    ) -> list[services.SearchResult]:
        with rt.sessions() as s:
            return rt.search(
                s,
                project=services.get_project(s, project_id),
                query=q,
                top_k=k,
                score_threshold=threshold,
                mode=m,
            )

    return answers.answer(
        question,
        retrieve=retrieve,
        chat=rt.chat,
        settings=rt.settings.chat,
        top_k=top_k,
        mode=mode,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--top-k", type=int, default=8)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--project", default="ask-bench")
    parser.add_argument("--cli-runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="two documents, one round")
    args = parser.parse_args()
    docs = DOCS[2:] if args.quick else DOCS
    if args.quick:
        args.rounds, args.cli_runs = 1, 1
    before = common.machine()
    tmp = None
    data_dir = args.data_dir
    if data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="docvec-ask-bench-")
        data_dir = Path(tmp.name) / "data"
    settings = Settings(data_dir=data_dir)
    migrate.upgrade(settings.sqlalchemy_url)
    rt = Runtime(settings)
    chunks = None
    t0 = time.perf_counter()
    first = None
    try:
        if args.data_dir is None:
            chunks = ingest(rt, args.project, docs)
            common.console.print(f"ingested {len(docs)} documents, {chunks} chunks")
            rt.close()
            rt = Runtime(settings)  # a fresh process's state: model and store not loaded
            t0 = time.perf_counter()
        first = ask(rt, args.project, QUESTIONS[0], "hybrid", args.top_k)
        first_s = time.perf_counter() - t0
        rows = []
        results: dict[str, Any] = {}
        for mode in SEARCH_MODES:
            retrieval, generation = [], []
            for _ in range(args.rounds):
                for q in QUESTIONS:
                    done = ask(rt, args.project, q, mode, args.top_k)
                    retrieval.append(done.retrieval_ms)
                    generation.append(done.generation_ms)
            results[mode] = {"retrieval_ms": retrieval, "generation_ms": generation}
            rows.append(
                [
                    mode,
                    len(retrieval),
                    common.median(retrieval),
                    common.percentile(retrieval, 95),
                    common.median(generation),
                    common.percentile(generation, 95),
                ]
            )
    finally:
        rt.close()
    env = {**os.environ, "DOCVEC_DATA_DIR": str(data_dir)}
    exe = str(Path(sys.executable).parent / "docvec")
    cli = []
    for _ in range(args.cli_runs):
        t = time.perf_counter()
        subprocess.run(
            [exe, "ask", QUESTIONS[0], "--project", args.project, "--json"],
            env=env,
            check=True,
            capture_output=True,
        )
        cli.append(time.perf_counter() - t)
    after = common.machine()
    provider = settings.chat.provider
    common.console.print(
        common.table(
            f"ask latency, chat provider {provider}, top_k {args.top_k}, ms (warm process)",
            ["mode", "asks", "retrieval p50", "retrieval p95", "generation p50", "generation p95"],
            rows,
        )
    )
    assert first is not None
    common.console.print(
        f"first ask in a fresh process: {first_s * 1000:.0f} ms (retrieval "
        f"{first.retrieval_ms:.0f} ms incl. loading the model and opening the store, generation "
        f"{first.generation_ms:.0f} ms); whole `docvec ask` processes: "
        + ", ".join(f"{s:.1f} s" for s in cli)
    )
    common.console.print(common.load_note(before, after))
    path = common.save(
        "ask",
        {
            "machine": before,
            "load_after": after["load_avg_1m"],
            "chat_provider": provider,
            "top_k": args.top_k,
            "chunks": chunks,
            "first_ask_ms": first_s * 1000,
            "first_ask": {"retrieval_ms": first.retrieval_ms, "generation_ms": first.generation_ms},
            "cli_wall_s": cli,
            "modes": results,
        },
    )
    common.console.print(f"results: {path}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
