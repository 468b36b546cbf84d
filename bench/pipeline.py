"""End-to-end embedded ingest vs the model alone on the same chunk texts, in one process.

    .venv/bin/python bench/pipeline.py [--quick] [--full] [--backend B] [--rounds R]

Ingests a fixed document set from the corpus exactly as ``docvec ingest`` does: store each file
(``services.add_document``), then ``app.pipeline.ingest.process_many`` through a
:class:`Runtime` on the embedded defaults (SQLite, the embedded vector store, the local model) in
a fresh temporary data dir. Then it embeds the very chunk texts the ingest stored with the same
loaded model alone (the provider's encoder, no pipeline), in full batches of the same batch size,
longest first. The ratio pipeline/model is the issue's target (>= 0.95).

The pipeline embeds each distinct chunk text once (app/pipeline/reuse.py), so on a set with
repeated chunks (the default set's 872-page handbook) it can beat the model alone on every chunk.
When the set has repeats, the model alone is also timed on the distinct texts only — the work the
pipeline does — and "pipeline x model alone on the distinct texts" is the pipeline's overhead on
that work.

The model is loaded (and warmed up) once, before anything is timed, and shared by both, as one
``docvec ingest`` process would hold it. Per-stage times are summed from the attempt rows'
``timings_ms``. Read, extract and chunk run in the preparer thread, overlapped with embedding, so
they are shown apart; "other" is the rest of the embedding thread's wall time (waiting for the
preparer, SQL around the stages, attempt rows). "x model alone, CPU s" compares CPU seconds
instead of wall seconds: steady when other processes share the machine, but blind to time spent
waiting on disk and to the extraction children's CPU (plain text and Markdown, extracted in the
process, are counted). The "embed stage" line shows what embedding inside the pipeline achieves
(batches shared by small documents; a long document's last batch partly empty) against the model
alone.

Document sets: ``--quick`` the 12 English FastAPI/command-line Markdown pages; default: every
corpus document except the two novels (about 100 files, ~3,200 chunks; the broken, encrypted and
image-only ones fail fast, as they would in real use); ``--full``: the whole corpus.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common

common.setup_environment()

import logging  # noqa: E402

from sqlalchemy import select  # noqa: E402

from app import services  # noqa: E402
from app.config import EmbeddingSettings, Settings  # noqa: E402
from app.db import migrate as db_migrate  # noqa: E402
from app.db.models import DocumentChunk, VectorizationAttempt  # noqa: E402
from app.embeddings.local import LocalProvider  # noqa: E402
from app.pipeline.ingest import process_many  # noqa: E402
from app.runtime import Runtime  # noqa: E402

NOVELS = ("text/txt/book-war-and-peace-1225p.txt", "text/txt/es/pg2000_don_quijote.txt")
PREPARER_STAGES = ("read", "extract", "chunk")
EMBEDDER_STAGES = ("embed", "upsert", "commit")


def document_set(quick: bool, full: bool) -> list[Path]:
    if quick:
        return sorted((common.CORPUS / "text" / "md" / "en").glob("*.md"))
    return common.corpus_files(exclude=() if full else NOVELS)


def ingest(files: list[Path], provider: LocalProvider) -> dict[str, object]:
    """One ``docvec ingest``-equivalent run into a fresh data dir; times and chunk texts."""
    with tempfile.TemporaryDirectory(prefix="docvec-bench-") as tmp:
        settings = Settings(_env_file=None, data_dir=Path(tmp))  # type: ignore[call-arg]
        db_migrate.upgrade(settings.sqlalchemy_url)
        rt = Runtime(settings, provider=provider)
        try:
            started = time.perf_counter()
            cpu_started = time.process_time()
            todo = []
            with rt.sessions() as s:
                project = services.get_or_create_project(s, name="bench")
                for f in files:
                    r = services.add_document(
                        s,
                        project=project,
                        storage=rt.storage,
                        file_name=str(f.relative_to(common.CORPUS)),
                        path=f,
                        max_bytes=settings.max_upload_bytes,
                    )
                    if r.created:
                        todo.append((r.document.id, r.document.generation))
                s.commit()
            stored = time.perf_counter()
            outcomes: dict[str, int] = defaultdict(int)
            chunks = 0
            for result in process_many(rt, todo):
                outcomes[str(result.outcome)] += 1
                chunks += result.chunks
            finished = time.perf_counter()
            cpu_s = time.process_time() - cpu_started

            stage_ms: dict[str, float] = defaultdict(float)
            with rt.sessions() as s:
                for timings in s.scalars(select(VectorizationAttempt.timings_ms)):
                    for k, v in (timings or {}).items():
                        stage_ms[k] += float(v)
                # In processing order: documents as ingested, chunks by index.
                order = {doc_id: i for i, (doc_id, _) in enumerate(todo)}
                rows = s.execute(
                    select(
                        DocumentChunk.document_id, DocumentChunk.chunk_index, DocumentChunk.content
                    )
                ).all()
            rows.sort(key=lambda r: (order[r[0]], r[1]))
            texts = [r[2] for r in rows]
        finally:
            rt.close()
    return {
        "documents": len(todo),
        "outcomes": dict(outcomes),
        "chunks": chunks,
        "store_s": stored - started,
        "process_s": finished - stored,
        "wall_s": finished - started,
        "cpu_s": cpu_s,
        "stage_ms": dict(stage_ms),
        "texts": texts,
    }


def model_alone(provider: LocalProvider, texts: list[str], batch_size: int) -> tuple[float, float]:
    """Wall and CPU seconds the loaded model takes on ``texts`` in full batches, nothing else:
    longest first, as sentence-transformers' ``encode`` orders a list (and as docvec's local
    provider orders a call), so each batch pads little and the model alone is at its best."""
    encoder = provider.encoder
    texts = sorted(texts, key=len, reverse=True)
    t, c = time.perf_counter(), time.process_time()
    for start in range(0, len(texts), batch_size):
        encoder.encode(texts[start : start + batch_size])
    return time.perf_counter() - t, time.process_time() - c


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="12 Markdown pages (~320 chunks)")
    parser.add_argument("--full", action="store_true", help="the whole corpus, novels included")
    parser.add_argument("--backend", default=None, help="local backend (default: the setting's)")
    parser.add_argument("--rounds", type=int, default=1, help="pipeline + model-alone rounds")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    # Failed documents (the corpus' broken files) are counted in the table, as docvec ingest does.
    logging.getLogger("app.pipeline.process").setLevel(logging.CRITICAL)

    files = document_set(args.quick, args.full)
    defaults = EmbeddingSettings()
    emb = defaults.model_copy(update={"backend": args.backend} if args.backend else {})
    provider = LocalProvider(emb)
    before = common.machine()
    t = time.perf_counter()
    provider.embed_query("warm up")
    load_s = time.perf_counter() - t
    batch = provider.batch_size
    common.console.print(
        f"[bold]pipeline[/bold]: {len(files)} files, backend {provider.backend}, batch {batch}; "
        f"model loaded in {load_s:.1f} s"
    )

    runs = []
    for r in range(args.rounds):
        run = ingest(files, provider)
        texts = run.pop("texts")
        assert isinstance(texts, list)
        run["model_alone_s"], run["model_alone_cpu_s"] = model_alone(provider, texts, batch)
        distinct = list(dict.fromkeys(texts))
        run["distinct_texts"] = len(distinct)
        if len(distinct) < len(texts):
            run["distinct_alone_s"], run["distinct_alone_cpu_s"] = model_alone(
                provider, distinct, batch
            )
        else:
            run["distinct_alone_s"] = run["model_alone_s"]
            run["distinct_alone_cpu_s"] = run["model_alone_cpu_s"]
        runs.append(run)
        common.console.print(
            f"  round {r + 1}: {run['chunks']} chunks ({len(distinct)} distinct texts), "
            f"pipeline {run['wall_s']:.1f} s, model alone {run['model_alone_s']:.1f} s "
            f"({run['distinct_alone_s']:.1f} s on the distinct texts)"
        )
    after = common.machine()

    def rate(run: dict[str, object], key: str) -> float:
        return float(run["chunks"]) / float(run[key])  # type: ignore[arg-type]

    ratios = [rate(run, "wall_s") / rate(run, "model_alone_s") for run in runs]
    cpu_ratios = [rate(run, "cpu_s") / rate(run, "model_alone_cpu_s") for run in runs]
    work_ratios = [rate(run, "wall_s") / rate(run, "distinct_alone_s") for run in runs]
    work_cpu_ratios = [rate(run, "cpu_s") / rate(run, "distinct_alone_cpu_s") for run in runs]
    best = runs[min(range(len(runs)), key=lambda i: abs(ratios[i] - common.median(ratios)))]
    chunks = int(best["chunks"])  # type: ignore[call-overload]
    wall = float(best["wall_s"])  # type: ignore[arg-type]
    stage_ms: dict[str, float] = best["stage_ms"]  # type: ignore[assignment]
    embed_s = stage_ms.get("embed", 0.0) / 1000
    ratio = common.median(ratios)
    cpu_ratio = common.median(cpu_ratios)
    work_ratio = common.median(work_ratios)
    work_cpu_ratio = common.median(work_cpu_ratios)

    summary = [
        [
            "pipeline (docvec ingest path)",
            int(best["documents"]) / wall,  # type: ignore[call-overload]
            chunks / wall,
            ratio,
            cpu_ratio,
        ],
        ["  embed stage only (pipeline batches)", None, chunks / embed_s, None, None],
        ["model alone (full batches)", None, rate(best, "model_alone_s"), 1.0, 1.0],
    ]
    repeats = int(best["distinct_texts"]) < chunks  # type: ignore[call-overload]
    if repeats:
        # Chunks per second when each distinct text is embedded once (what the pipeline does).
        summary.append(
            [
                f"model alone, the {best['distinct_texts']} distinct texts only",
                None,
                rate(best, "distinct_alone_s"),
                rate(best, "distinct_alone_s") / rate(best, "model_alone_s"),
                rate(best, "distinct_alone_cpu_s") / rate(best, "model_alone_cpu_s"),
            ]
        )
    if embed_s:
        summary[1][3] = (chunks / embed_s) / rate(best, "model_alone_s")
    common.console.print(
        common.table(
            f"embedded ingest vs the model alone ({chunks} chunks, {best['documents']} documents, "
            f"outcomes {best['outcomes']})",
            ["", "documents/s", "chunks/s", "x model alone", "x model alone, CPU s"],
            summary,
        )
    )
    if repeats:
        common.console.print(
            f"pipeline x model alone on the distinct texts (the pipeline's overhead on the work "
            f"it does): [bold]{work_ratio:.3f}[/bold] wall, {work_cpu_ratio:.3f} CPU s"
        )
    in_line = sum(stage_ms.get(k, 0.0) for k in EMBEDDER_STAGES) / 1000
    stage_rows = [["store files (add_document)", float(best["store_s"])]]  # type: ignore[arg-type]
    stage_rows += [
        [f"{k} (preparer thread, overlapped)", stage_ms.get(k, 0.0) / 1000] for k in PREPARER_STAGES
    ]
    stage_rows += [[k, stage_ms.get(k, 0.0) / 1000] for k in EMBEDDER_STAGES]
    stage_rows.append(
        ["other (waiting for the preparer, SQL, attempt rows)", float(best["process_s"]) - in_line]
    )  # type: ignore[arg-type]
    common.console.print(
        common.table(
            "where the wall time goes",
            ["stage", "seconds", "% of wall", "ms/chunk"],
            [[k, v, 100 * v / wall, 1000 * v / max(chunks, 1)] for k, v in stage_rows],
        )
    )
    note = common.load_note(before, after)
    common.console.print(f"[dim]{note}[/dim]")
    path = common.save(
        "pipeline",
        {
            "machine": before,
            "load_after": after["load_avg_1m"],
            "note": note,
            "params": {
                "files": len(files),
                "backend": provider.backend,
                "batch": batch,
                "rounds": args.rounds,
                "set": "quick" if args.quick else "full" if args.full else "default",
            },
            "model_load_s": load_s,
            "ratio_pipeline_to_model": ratio,
            "ratios": ratios,
            "cpu_ratio_pipeline_to_model": cpu_ratio,
            "ratio_pipeline_to_model_distinct": work_ratio,
            "ratios_distinct": work_ratios,
            "cpu_ratio_pipeline_to_model_distinct": work_cpu_ratio,
            "pipeline_chunks_per_s": chunks / wall,
            "pipeline_documents_per_s": int(best["documents"]) / wall,  # type: ignore[call-overload]
            "model_alone_chunks_per_s": rate(best, "model_alone_s"),
            "runs": runs,
        },
    )
    common.console.print(f"[dim]written {path.relative_to(common.REPO)}[/dim]")


if __name__ == "__main__":
    main()
