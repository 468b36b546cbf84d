"""The ``docvec`` command line (typer + rich).

``ingest`` runs the pipeline in-process on whatever the settings point at — by default the embedded
defaults (SQLite, Qdrant local mode, the local model under ``DOCVEC_DATA_DIR``). ``api``, ``worker``
and ``flower`` start the service processes.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from sqlalchemy import func, select

from app import services
from app.config import Settings, get_settings
from app.db import migrate as db_migrate
from app.db.models import Document, DocumentStatus, Project
from app.errors import DocvecError
from app.runtime import Runtime
from app.vectorstore import DEFAULT_SEARCH_MODE, SEARCH_MODES

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
out = Console()
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
ProjectOpt = Annotated[str, typer.Option("--project", "-p", help="Project name (or id).")]


def _settings() -> Settings:
    return get_settings()


def _runtime(settings: Settings) -> Runtime:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # pypdf reports every recoverable oddity of a PDF as a warning; the document's outcome says
    # what matters.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    if settings.auto_migrate:
        db_migrate.upgrade(settings.sqlalchemy_url)
    return Runtime(settings)


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise _fail(f"{path} does not exist")
    # Hidden files and folders (.git, .DS_Store, ~$ lock files stay: they are "documents" users
    # dropped) are skipped like every other ingestion tool does.
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(help="A file or a folder (read recursively).")],
    project: ProjectOpt,
    retry_failed: Annotated[
        bool, typer.Option(help="Process again files that failed in an earlier run.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Store, chunk, embed and index documents, in this process."""
    from app.pipeline.ingest import process_many

    settings = _settings()
    files = _files(path)
    rt = _runtime(settings)
    logging.getLogger("app.pipeline.process").setLevel(logging.CRITICAL)  # the table reports
    started = time.perf_counter()
    report: dict[str, Any] = {
        "project": project,
        "vectorized": [],
        "failed": [],
        "skipped": [],
        "chunks": 0,
    }
    try:
        with rt.sessions() as s:
            proj = services.get_or_create_project(s, name=project)
            s.commit()
            project_id = proj.id
        todo: list[tuple[uuid.UUID, int, str]] = []
        seen: dict[uuid.UUID, str] = {}
        with rt.sessions() as s:
            found = s.get(Project, project_id)
            assert found is not None
            proj = found
            for f in files:
                rel = str(f.relative_to(path)) if path.is_dir() else f.name
                r = services.add_document(
                    s,
                    project=proj,
                    storage=rt.storage,
                    file_name=rel,
                    path=f,
                    max_bytes=settings.max_upload_bytes,
                )
                d = r.document
                if d.id in seen:
                    report["skipped"].append(
                        {"file": rel, "reason": f"same content as {seen[d.id]}"}
                    )
                    continue
                seen[d.id] = rel
                again = d.status == DocumentStatus.failed and retry_failed
                if r.created or d.status in (DocumentStatus.pending, DocumentStatus.processing):
                    todo.append((d.id, d.generation, rel))
                elif again:
                    todo.append((d.id, services.request_revectorize(s, document=d), rel))
                else:
                    why = "unchanged (same sha256), already " + d.status
                    if d.status == DocumentStatus.failed:
                        why += f": {d.error}"
                    report["skipped"].append({"file": rel, "reason": why})
            s.commit()

        chunks_done = 0
        with Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[extra]}"),
            TimeElapsedColumn(),
            console=err,
            disable=not err.is_terminal and as_json,
        ) as progress:
            docs_task = progress.add_task("documents", total=len(todo), extra="")
            chunk_task = progress.add_task("chunks", total=None, extra="")
            embed_started = time.perf_counter()

            def on_chunks(n: int) -> None:
                nonlocal chunks_done
                chunks_done += n
                rate = chunks_done / max(time.perf_counter() - embed_started, 1e-9)
                progress.update(chunk_task, advance=n, extra=f"{rate:.1f} chunks/s")

            names = {doc_id: rel for doc_id, _, rel in todo}

            def on_started(doc_id: uuid.UUID) -> None:
                progress.update(docs_task, extra=names[doc_id][-50:])

            # Extraction of the next documents overlaps embedding; small documents share batches.
            results = process_many(
                rt,
                [(doc_id, generation) for doc_id, generation, _ in todo],
                on_chunks=on_chunks,
                on_started=on_started,
            )
            for result in results:
                rel = names[result.document_id]
                if result.outcome == "succeeded":
                    report["vectorized"].append({"file": rel, "chunks": result.chunks})
                    report["chunks"] += result.chunks
                elif result.outcome == "skipped":
                    report["skipped"].append({"file": rel, "reason": "already vectorized"})
                else:
                    report["failed"].append(
                        {"file": rel, "stage": result.stage, "reason": result.error}
                    )
                progress.advance(docs_task)
            if report["vectorized"]:
                # Qdrant Edge builds its search index only when asked (a no-op for other
                # stores): here, once, rather than on the first searches.
                progress.add_task("optimizing the search index", total=None, extra="")
                t = time.perf_counter()
                rt.vector_store.optimize()
                report["optimize_s"] = round(time.perf_counter() - t, 2)
    except DocvecError as exc:
        raise _fail(str(exc)) from exc
    finally:
        rt.close()
    wall = time.perf_counter() - started
    report["wall_time_s"] = round(wall, 2)
    report["chunks_per_s"] = round(report["chunks"] / wall, 2) if wall else 0.0
    if as_json:
        print(json.dumps(report, default=str))
        return
    _print_ingest_report(report)


def _print_ingest_report(report: dict[str, Any]) -> None:
    if report["failed"]:
        t = Table(title="failed", title_justify="left")
        t.add_column("file", overflow="fold")
        t.add_column("stage")
        t.add_column("reason", overflow="fold")
        for f in report["failed"]:
            t.add_row(f["file"], f["stage"] or "", f["reason"] or "")
        out.print(t)
    if report["skipped"]:
        out.print(
            f"[dim]{len(report['skipped'])} file(s) skipped (unchanged or duplicate): "
            "nothing to do for them.[/dim]"
        )
    summary = Table(title=f"ingest into project {report['project']!r}", title_justify="left")
    summary.add_column("vectorized", justify="right")
    summary.add_column("failed", justify="right")
    summary.add_column("skipped (duplicates)", justify="right")
    summary.add_column("chunks", justify="right")
    summary.add_column("wall time", justify="right")
    summary.add_column("chunks/s", justify="right")
    summary.add_row(
        str(len(report["vectorized"])),
        str(len(report["failed"])),
        str(len(report["skipped"])),
        str(report["chunks"]),
        f"{report['wall_time_s']:.1f} s",
        f"{report['chunks_per_s']:.1f}",
    )
    out.print(summary)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="The question or text to look for.")],
    project: ProjectOpt,
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=100)] = 5,
    score_threshold: Annotated[
        float | None,
        typer.Option(
            "--score-threshold",
            min=-1.0,
            max=1.0,
            help="Minimum cosine similarity of the dense side (not with --mode lexical).",
        ),
    ] = None,
    mode: Annotated[
        str,
        typer.Option(
            "--mode",
            help="dense (embeddings), lexical (BM25 on words) or hybrid (both, fused by RRF).",
        ),
    ] = DEFAULT_SEARCH_MODE,
    as_json: JsonOpt = False,
) -> None:
    """Search inside a project: dense, lexical (BM25) or hybrid."""
    if mode not in SEARCH_MODES:
        raise _fail(f"--mode must be one of {', '.join(SEARCH_MODES)}")
    if mode == "lexical" and score_threshold is not None:
        raise _fail("--score-threshold is a cosine similarity: it has no meaning with lexical")
    settings = _settings()
    rt = _runtime(settings)
    try:
        with rt.sessions() as s:
            try:
                proj = services.find_project(s, project)
            except services.NotFound as exc:
                raise _fail(str(exc)) from exc
            results = services.search(
                s,
                project=proj,
                query=query,
                provider=rt.provider,
                store=rt.vector_store,
                top_k=top_k,
                score_threshold=score_threshold,
                mode=mode,
            )
    except DocvecError as exc:
        raise _fail(str(exc)) from exc
    finally:
        rt.close()
    if as_json:
        print(
            json.dumps(
                {
                    "query": query,
                    "project": project,
                    "mode": mode,
                    "results": [_hit(r) for r in results],
                },
                default=str,
            )
        )
        return
    if not results:
        out.print("no results")
        return
    t = Table(show_lines=True)
    t.add_column({"dense": "cosine", "lexical": "BM25", "hybrid": "RRF"}[mode], justify="right")
    if mode == "hybrid":
        t.add_column("dense #", justify="right")
        t.add_column("lexical #", justify="right")
    t.add_column("file", overflow="fold", max_width=30)
    t.add_column("chunk", justify="right")
    t.add_column("page", justify="right")
    t.add_column("text", overflow="fold")
    for r in results:
        text = r.text if len(r.text) <= 400 else r.text[:400] + "…"
        ranks = [_rank(r.dense_rank), _rank(r.lexical_rank)] if mode == "hybrid" else []
        t.add_row(
            f"{r.score:.4f}" if mode == "hybrid" else f"{r.score:.3f}",
            *ranks,
            r.file_name,
            str(r.chunk_index),
            "" if r.page is None else str(r.page),
            text,
        )
    out.print(t)


def _rank(rank: int | None) -> str:
    return "-" if rank is None else str(rank)


def _hit(r: services.SearchResult) -> dict[str, Any]:
    return {
        "score": r.score,
        "dense_rank": r.dense_rank,
        "lexical_rank": r.lexical_rank,
        "dense_score": r.dense_score,
        "lexical_score": r.lexical_score,
        "document_id": str(r.document_id),
        "file_name": r.file_name,
        "chunk_index": r.chunk_index,
        "page": r.page,
        "start_char": r.start_char,
        "end_char": r.end_char,
        "text": r.text,
    }


def _doc_dict(d: Document, *, attempts: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(d.id),
        "file_name": d.file_name,
        "status": d.status,
        "error": d.error,
        "failed_stage": d.failed_stage,
        "chunk_count": d.chunk_count,
        "page_count": d.page_count,
        "embedding_model": d.embedding_model,
        "vectorized_at": d.vectorized_at.isoformat() if d.vectorized_at else None,
        "generation": d.generation,
    }
    if attempts:
        data["attempts"] = [
            {
                "attempt": a.attempt,
                "task_id": a.task_id,
                "worker": a.worker,
                "started_at": a.started_at.isoformat(),
                "finished_at": a.finished_at.isoformat() if a.finished_at else None,
                "outcome": a.outcome,
                "error": a.error,
                "failed_stage": a.failed_stage,
                "chunks": a.chunks,
                "timings_ms": a.timings_ms,
                # inputs, requests, retries, tokens, and chunks the model truncated to its window
                "usage": a.usage,
            }
            for a in d.attempts
        ]
    return data


@app.command()
def status(
    document_id: Annotated[str | None, typer.Argument(help="A document id.")] = None,
    project: Annotated[str | None, typer.Option("--project", "-p")] = None,
    as_json: JsonOpt = False,
) -> None:
    """A document's status and attempts, or a project's documents by status."""
    settings = _settings()
    rt = _runtime(settings)
    try:
        with rt.sessions() as s:
            if document_id:
                try:
                    doc = services.get_document(s, uuid.UUID(document_id))
                except (ValueError, services.NotFound) as exc:
                    raise _fail(f"document {document_id} not found") from exc
                data: dict[str, Any] = _doc_dict(doc, attempts=True)
            else:
                q = select(Project).order_by(Project.name)
                if project:
                    try:
                        q = q.where(Project.id == services.find_project(s, project).id)
                    except services.NotFound as exc:
                        raise _fail(str(exc)) from exc
                data = {"projects": []}
                for p in s.scalars(q):
                    docs = s.scalars(
                        select(Document)
                        .where(Document.project_id == p.id)
                        .order_by(Document.file_name)
                    ).all()
                    counts = Counter(d.status for d in docs)
                    data["projects"].append(
                        {
                            "id": str(p.id),
                            "name": p.name,
                            "documents_by_status": dict(counts),
                            "chunks": sum(d.chunk_count for d in docs),
                            "documents": [_doc_dict(d) for d in docs] if project else None,
                        }
                    )
    finally:
        rt.close()
    if as_json:
        print(json.dumps(data, default=str))
        return
    if document_id:
        for k, v in data.items():
            if k != "attempts":
                out.print(f"[bold]{k}[/bold]: {v}")
        t = Table(title="attempts", title_justify="left")
        for col in (
            "attempt",
            "worker",
            "started_at",
            "outcome",
            "chunks",
            "truncated",
            "failed_stage",
            "error",
        ):
            t.add_column(col, overflow="fold")
        for a in data["attempts"]:
            usage = a["usage"] or {}
            t.add_row(
                str(a["attempt"]),
                a["worker"] or "",
                a["started_at"],
                a["outcome"],
                "" if a["chunks"] is None else str(a["chunks"]),
                str(usage.get("truncated", "")),
                a["failed_stage"] or "",
                (a["error"] or "")[:200],
            )
        out.print(t)
        return
    t = Table()
    for col in ("project", *[s.value for s in DocumentStatus], "chunks"):
        t.add_column(col, justify="right" if col != "project" else "left")
    for p in data["projects"]:
        c = p["documents_by_status"]
        t.add_row(p["name"], *[str(c.get(s.value, 0)) for s in DocumentStatus], str(p["chunks"]))
    out.print(t)
    for p in data["projects"]:
        for d in p["documents"] or []:
            line = f"{d['id']}  {d['status']:<10} {d['chunk_count']:>6}  {d['file_name']}"
            if d["error"]:
                line += f"  [red]{d['failed_stage']}: {d['error'][:120]}[/red]"
            out.print(line, highlight=False)


@app.command()
def revectorize(
    document_id: Annotated[str | None, typer.Argument(help="A document id.")] = None,
    project: Annotated[str | None, typer.Option("--project", "-p")] = None,
    queue: Annotated[
        bool, typer.Option(help="Enqueue to the Celery workers instead of running here.")
    ] = False,
) -> None:
    """Re-vectorize a document or every document of a project."""
    if not document_id and not project:
        raise _fail("give a document id or --project")
    settings = _settings()
    rt = _runtime(settings)
    try:
        with rt.sessions() as s:
            if document_id:
                docs = [services.get_document(s, uuid.UUID(document_id))]
            else:
                proj = services.find_project(s, project or "")
                docs = list(s.scalars(select(Document).where(Document.project_id == proj.id)))
            jobs = [(d.id, services.request_revectorize(s, document=d)) for d in docs]
            s.commit()
        if queue:
            _enqueue_all(settings, jobs)
            return
        from app.pipeline.ingest import process_many

        outcomes = Counter(str(r.outcome) for r in process_many(rt, jobs))
        if outcomes.get("succeeded"):
            rt.vector_store.optimize()
        out.print(", ".join(f"{k}: {v}" for k, v in outcomes.items()) or "nothing to do")
    except (services.NotFound, ValueError) as exc:
        raise _fail(str(exc)) from exc
    finally:
        rt.close()


def _enqueue_all(settings: Settings, jobs: list[tuple[uuid.UUID, int]]) -> None:
    from app.jobqueue import JobQueue

    queue = JobQueue(settings)
    try:
        for doc_id, gen in jobs:
            queue.enqueue(doc_id, gen)
    finally:
        queue.close()
    out.print(f"queued {len(jobs)} document(s)")


@app.command()
def retry(
    failed: Annotated[bool, typer.Option("--failed", help="Retry every failed document.")] = False,
    project: Annotated[str | None, typer.Option("--project", "-p")] = None,
    queue: Annotated[
        bool, typer.Option(help="Enqueue to the Celery workers instead of running here.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Retry failed documents (of one project, or all) in bulk."""
    if not failed:
        raise _fail("say what to retry: --failed")
    settings = _settings()
    rt = _runtime(settings)
    try:
        with rt.sessions() as s:
            proj = None
            if project:
                try:
                    proj = services.find_project(s, project)
                except services.NotFound as exc:
                    raise _fail(str(exc)) from exc
            jobs = services.retry_failed(s, project=proj)
            s.commit()
        if queue:
            _enqueue_all(settings, jobs)
            return
        from app.pipeline.ingest import process_many

        outcomes = Counter(str(r.outcome) for r in process_many(rt, jobs))
        if outcomes.get("succeeded"):
            rt.vector_store.optimize()
    finally:
        rt.close()
    if as_json:
        print(json.dumps({"retried": len(jobs), "outcomes": dict(outcomes)}))
    else:
        out.print(f"retried {len(jobs)}: " + ", ".join(f"{k}: {v}" for k, v in outcomes.items()))


@app.command()
def reconcile(
    fix: Annotated[
        bool, typer.Option("--fix", help="Delete orphan points, re-vectorize the rest.")
    ] = False,
    queue: Annotated[
        bool, typer.Option(help="With --fix: enqueue re-vectorizing instead of running here.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Compare SQL with the vector store; exit 1 if they differ (and were not fixed)."""
    settings = _settings()
    rt = _runtime(settings)
    try:
        with rt.sessions() as s:
            report = services.reconcile(s, store=rt.vector_store)
            jobs: list[tuple[uuid.UUID, int]] = []
            if fix and not report.clean:
                jobs = services.repair(s, store=rt.vector_store, report=report)
                s.commit()
        if jobs and queue:
            _enqueue_all(settings, jobs)
        elif jobs:
            from app.pipeline.ingest import process_many

            for _ in process_many(rt, jobs):
                pass
            rt.vector_store.optimize()
    finally:
        rt.close()
    data = report.as_dict()
    if as_json:
        print(json.dumps(data))
    else:
        verdict = "SQL and the vector store agree" if report.clean else "drift found"
        out.print(f"[bold]{verdict}[/bold]")
        out.print(f"points without a chunk row: {data['orphan_points']}")
        out.print(f"documents with chunk rows but no points: {len(report.missing_points)}")
        out.print(f"vectorized documents with a wrong chunk count: {len(report.count_mismatches)}")
        out.print(f"documents with points lacking lexical terms: {len(report.missing_lexical)}")
        if report.fixed:
            out.print(f"fixed: deleted orphan points, re-vectorized {len(jobs)} document(s)")
    if not report.clean and not report.fixed:
        raise typer.Exit(1)


@app.command(name="eval")
def eval_(
    dataset: Annotated[
        Path,
        typer.Argument(
            help="A BEIR data set: corpus.jsonl, queries.jsonl, qrels/<split>.tsv.",
            exists=True,
            file_okay=False,
        ),
    ],
    split: Annotated[str, typer.Option(help="The judgments to use: qrels/<split>.tsv.")] = "test",
    mode: Annotated[str, typer.Option(help="dense, lexical, hybrid, or all three.")] = "all",
    reference: Annotated[
        bool,
        typer.Option(help="Also measure the embedding model alone on whole documents and bm25s."),
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Measure retrieval quality on a BEIR data set: nDCG@10, Recall@100, MRR@10, MAP@100.

    Every corpus record is ingested as a document through the pipeline into a project of its own
    (reused when run again with the same data and settings); every query of the split runs
    through the same search as `docvec search`.
    """
    from app import evaluation

    if mode != "all" and mode not in SEARCH_MODES:
        raise _fail(f"--mode must be all or one of {', '.join(SEARCH_MODES)}")
    modes = list(SEARCH_MODES) if mode == "all" else [mode]
    settings = _settings()
    rt = _runtime(settings)
    logging.getLogger("app.pipeline.process").setLevel(logging.CRITICAL)  # the report counts
    try:
        with Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            disable=not err.is_terminal and as_json,
        ) as progress:
            report = evaluation.run_eval(
                rt,
                dataset,
                split=split,
                modes=modes,  # type: ignore[arg-type]  # checked against SEARCH_MODES above
                references=reference,
                progress=progress,
            )
    except evaluation.EvalDataError as exc:
        raise _fail(str(exc)) from exc
    except DocvecError as exc:
        raise _fail(str(exc)) from exc
    finally:
        rt.close()
    if as_json:
        print(json.dumps(report.as_dict(), default=str))
        return
    _print_eval_report(report)


def _print_eval_report(report: Any) -> None:
    from app import evaluation

    ing = report.ingest
    t = Table(
        title=f"{report.dataset} ({report.split}, {report.queries} queries) · "
        f"project {report.project}",
        title_justify="left",
    )
    t.add_column("ranking")
    for metric in evaluation.METRICS:
        t.add_column(metric, justify="right")
    t.add_column("p50 ms", justify="right")
    t.add_column("p95 ms", justify="right")
    best = evaluation.best_mode(report) if report.modes else None
    rows = [(m, r, m == best) for m, r in report.modes.items()]
    rows += [(f"{m} (reference)", r, False) for m, r in report.references.items()]
    for label, r, is_best in rows:
        t.add_row(
            f"[bold]{label}[/bold]" if is_best else label,
            *[f"{100 * r.metrics[m]:.2f}" for m in evaluation.METRICS],
            f"{r.latency_ms['p50']:.1f}",
            f"{r.latency_ms['p95']:.1f}",
        )
    out.print(t)
    reused = f", {ing.reused} reused from an earlier run" if ing.reused else ""
    failed = f", [red]{ing.failed} failed[/red]" if ing.failed else ""
    out.print(
        f"ingest: {ing.documents} documents, {ing.chunks} chunks, {ing.pipeline_seconds:.0f} s "
        f"of pipeline time; this run vectorized {ing.vectorized_now} in {ing.seconds:.1f} s"
        f"{reused}{failed}. Metrics in percent; latency of one search call (references: in "
        "memory, no store or SQL)."
    )


@app.command()
def projects(as_json: JsonOpt = False) -> None:
    """List projects."""
    rt = _runtime(_settings())
    try:
        with rt.sessions() as s:
            rows = s.execute(
                select(Project.name, Project.id, func.count(Document.id))
                .outerjoin(Document, Document.project_id == Project.id)
                .group_by(Project.id, Project.name)
                .order_by(Project.name)
            ).all()
    finally:
        rt.close()
    if as_json:
        print(json.dumps([{"name": n, "id": str(i), "documents": c} for n, i, c in rows]))
        return
    for n, i, c in rows:
        out.print(f"{i}  {n}  ({c} documents)", highlight=False)


@app.command()
def providers(
    probe: Annotated[
        str,
        typer.Option(
            help="Which remote providers get one live test request: configured, all or none."
        ),
    ] = "configured",
    timeout: Annotated[float, typer.Option(help="Seconds per probe request.", min=0.1)] = 5.0,
    as_json: JsonOpt = False,
) -> None:
    """Embedding providers: available or not (SDK, API key, server), model, dimension, limits.

    Exits with 1 when the configured provider is unavailable.
    """
    from app.embeddings.status import ProbeMode, provider_statuses

    modes: dict[str, ProbeMode] = {"configured": "configured", "all": "all", "none": "none"}
    if probe not in modes:
        raise _fail("--probe must be configured, all or none")
    settings = _settings()
    report = provider_statuses(settings.embedding, probe=modes[probe], timeout_s=timeout)
    configured_ok = all(r.available for r in report if r.configured)
    if as_json:
        print(json.dumps({"providers": [r.as_dict() for r in report]}, default=str))
        raise typer.Exit(0 if configured_ok else 1)
    for r in report:
        name = f"[bold]{r.provider}[/bold]" + (" (configured)" if r.configured else "")
        state = "[green]available[/green]" if r.available else f"[red]unavailable[/red]: {r.reason}"
        dim = f"{r.dimension} dims" if r.dimension else "dimension unknown"
        out.print(f"{name}  {state}")
        out.print(f"  model {r.model} · {dim}" + (f" · {r.base_url}" if r.base_url else ""))
        out.print("  checks: " + " · ".join(f"{k} {v}" for k, v in r.checks.items()))
        out.print(f"  limits: {r.limits_text()}", highlight=False)
    if not configured_ok:
        raise typer.Exit(1)


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema (Alembic)."""
    settings = _settings()
    db_migrate.upgrade(settings.sqlalchemy_url)
    out.print("database is at the newest migration")


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Default: DOCVEC_API_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Default: DOCVEC_API_PORT.")] = None,
) -> None:
    """Run the HTTP API (FastAPI under uvicorn). OpenAPI docs at /docs."""
    import uvicorn

    settings = _settings()
    uvicorn.run(
        "app.api.main:create_app",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        log_level=settings.log_level.lower(),
    )


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(
    ctx: typer.Context,
    concurrency: Annotated[
        int | None, typer.Option(help="Worker processes. Default: DOCVEC_WORKER_CONCURRENCY.")
    ] = None,
) -> None:
    """Run a Celery worker on the docvec queue (extra arguments go to Celery).

    Prometheus metrics of the worker and all its child processes are served on
    ``DOCVEC_WORKER_METRICS_PORT`` (default 9808; 0 turns it off).
    """
    settings = _settings()
    if settings.worker_metrics_port:
        _serve_worker_metrics(settings)
    from workers.celery_app import celery_app

    argv = [
        "worker",
        f"--queues={settings.queue}",
        f"--concurrency={concurrency or settings.worker_concurrency}",
        "--prefetch-multiplier=1",
        f"--loglevel={settings.log_level}",
        "--hostname=docvec@%h",
        *ctx.args,
    ]
    celery_app.worker_main(argv)


def _serve_worker_metrics(settings: Settings) -> None:
    # app.entry pointed prometheus-client at this worker's multiprocess folder before anything
    # imported it: every prefork child writes its samples there; this process serves their sum.
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        err.print("[yellow]metrics not served: start workers with the `docvec` command[/yellow]")
        return
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    try:
        start_http_server(settings.worker_metrics_port, registry=registry)
    except OSError as exc:
        err.print(
            f"[yellow]metrics not served: port {settings.worker_metrics_port} is taken ({exc}); "
            "set DOCVEC_WORKER_METRICS_PORT per worker on one machine[/yellow]"
        )


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def beat(ctx: typer.Context) -> None:
    """Run Celery beat: schedules the sweep for stuck documents (run exactly one per broker)."""
    from workers.celery_app import celery_app

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    schedule = settings.data_dir / "celerybeat-schedule"
    celery_app.start(
        ["beat", f"--schedule={schedule}", f"--loglevel={settings.log_level}", *ctx.args]
    )


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def flower(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="Flower's HTTP port.")] = 5555,
) -> None:
    """Run Flower (Celery's monitoring UI) against the same broker."""
    args = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.celery_app",
        "flower",
        f"--port={port}",
        *ctx.args,
    ]
    os.execv(sys.executable, args)


# ---- API keys -----------------------------------------------------------------------------------
keys_app = typer.Typer(
    no_args_is_help=True,
    help="API keys of the HTTP API. Once one exists, every route but /healthz and /readyz needs "
    "'Authorization: Bearer <key>'. Only a hash of each key is stored.",
)
app.add_typer(keys_app, name="keys")


def _key_dict(s: Any, key: Any) -> dict[str, Any]:
    names = {
        str(i): n
        for i, n in s.execute(
            select(Project.id, Project.name).where(
                Project.id.in_([uuid.UUID(p) for p in key.project_ids or []])
            )
        ).all()
    }
    return {
        "id": str(key.id),
        "name": key.name,
        "prefix": key.prefix,
        "all_projects": key.all_projects,
        "projects": [{"id": p, "name": names.get(p)} for p in key.project_ids or []],
        "created_at": key.created_at.isoformat(),
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


def _key_scope(data: dict[str, Any]) -> str:
    if data["all_projects"]:
        return "all projects"
    return ", ".join(p["name"] or f"{p['id']} (deleted)" for p in data["projects"])


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="A unique label, e.g. who or what uses the key.")],
    project: Annotated[
        list[str] | None,
        typer.Option("--project", "-p", help="A project (name or id) the key opens; repeatable."),
    ] = None,
    all_projects: Annotated[
        bool, typer.Option("--all-projects", help="Open every project; may create projects.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key. Its secret is printed once: only its SHA-256 is stored."""
    from app import apikeys

    rt = _runtime(_settings())
    try:
        with rt.sessions() as s:
            try:
                scope = [services.find_project(s, ref) for ref in project or []]
                key, secret = apikeys.create_key(
                    s, name=name, projects=scope, all_projects=all_projects
                )
            except (services.NotFound, ValueError) as exc:
                raise _fail(str(exc)) from exc
            s.commit()
            data = _key_dict(s, key)
    finally:
        rt.close()
    if as_json:
        print(json.dumps({**data, "secret": secret}))
        return
    out.print(f"API key [bold]{data['name']}[/bold] ({data['id']}) for {_key_scope(data)}.")
    out.print("Its secret is shown only now; send it as 'Authorization: Bearer <secret>':")
    print(secret)


@keys_app.command("list")
def keys_list(as_json: JsonOpt = False) -> None:
    """List API keys (never their secrets): prefix, scope, created, revoked."""
    from app import apikeys

    rt = _runtime(_settings())
    try:
        with rt.sessions() as s:
            rows = [_key_dict(s, k) for k in apikeys.list_keys(s)]
    finally:
        rt.close()
    if as_json:
        print(json.dumps(rows))
        return
    t = Table()
    for col in ("id", "name", "prefix", "scope", "created", "revoked"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(
            r["id"],
            r["name"],
            r["prefix"] + "…",
            _key_scope(r),
            r["created_at"],
            r["revoked_at"] or "",
        )
    out.print(t)


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="The key's id, name or prefix.")],
) -> None:
    """Revoke an API key: requests with it get 401 from now on."""
    from app import apikeys

    rt = _runtime(_settings())
    try:
        with rt.sessions() as s:
            try:
                row = apikeys.revoke_key(s, key)
            except apikeys.UnknownKey as exc:
                raise _fail(str(exc)) from exc
            s.commit()
            out.print(f"revoked API key {row.name} ({row.prefix}…)", highlight=False)
    finally:
        rt.close()


def main() -> None:
    """Entry point of the ``docvec`` script."""
    app()


if __name__ == "__main__":
    main()
