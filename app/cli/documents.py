"""Documents after ingest: ``status``, ``revectorize``, ``replace``, ``retry`` and ``reconcile``."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from app import services
from app.cli._utilities import (
    JsonOpt,
    ProjectFilterOpt,
    QueueOpt,
    app,
    exit_on,
    fail,
    format_outcomes,
    open_runtime,
    out,
    print_json,
    run_jobs,
)
from app.config import get_settings
from app.db.models import Document, DocumentStatus
from app.errors import DocvecError
from app.pipeline.extract import detect_type

DocumentArg = Annotated[str | None, typer.Argument(help="A document id.")]

#: Columns of the attempts table of ``docvec status <document-id>``.
_ATTEMPT_COLUMNS = (
    "attempt",
    "worker",
    "started_at",
    "outcome",
    "chunks",
    "truncated",
    "failed_stage",
    "error",
)


@app.command()
def status(
    document_id: DocumentArg = None,
    project: ProjectFilterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A document's status and attempts, or a project's documents by status."""
    with open_runtime(get_settings()) as runtime, runtime.sessions() as session:
        if document_id:
            try:
                doc = services.get_document(session, uuid.UUID(document_id))
            except (ValueError, services.NotFound) as exc:
                raise fail(f"document {document_id} not found") from exc
            data: dict[str, Any] = _document_dict(doc, attempts=True)
        else:
            with exit_on(services.NotFound):
                only = services.find_project(session, project) if project else None
            data = {
                "projects": [
                    {
                        "id": str(p.project.id),
                        "name": p.project.name,
                        "documents_by_status": dict(Counter(d.status for d in p.documents)),
                        "chunks": sum(d.chunk_count for d in p.documents),
                        "documents": [_document_dict(d) for d in p.documents] if project else None,
                    }
                    for p in services.list_project_documents(session, project=only)
                ]
            }
    if as_json:
        print_json(data)
    elif document_id:
        _print_document(data)
    else:
        _print_projects(data)


def _document_dict(doc: Document, *, attempts: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(doc.id),
        "file_name": doc.file_name,
        "status": doc.status,
        "error": doc.error,
        "failed_stage": doc.failed_stage,
        "chunk_count": doc.chunk_count,
        "page_count": doc.page_count,
        "embedding_model": doc.embedding_model,
        "vectorized_at": doc.vectorized_at.isoformat() if doc.vectorized_at else None,
        "generation": doc.generation,
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
            for a in doc.attempts
        ]
    return data


def _print_document(data: dict[str, Any]) -> None:
    for k, v in data.items():
        if k != "attempts":
            out.print(f"[bold]{k}[/bold]: {v}")
    table = Table(title="attempts", title_justify="left")
    for col in _ATTEMPT_COLUMNS:
        table.add_column(col, overflow="fold")
    for a in data["attempts"]:
        usage = a["usage"] or {}
        table.add_row(
            str(a["attempt"]),
            a["worker"] or "",
            a["started_at"],
            a["outcome"],
            "" if a["chunks"] is None else str(a["chunks"]),
            str(usage.get("truncated", "")),
            a["failed_stage"] or "",
            (a["error"] or "")[:200],
        )
    out.print(table)


def _print_projects(data: dict[str, Any]) -> None:
    table = Table()
    for col in ("project", *[state.value for state in DocumentStatus], "chunks"):
        table.add_column(col, justify="right" if col != "project" else "left")
    for p in data["projects"]:
        counts = p["documents_by_status"]
        table.add_row(
            p["name"],
            *[str(counts.get(state.value, 0)) for state in DocumentStatus],
            str(p["chunks"]),
        )
    out.print(table)
    for p in data["projects"]:
        for d in p["documents"] or []:
            line = f"{d['id']}  {d['status']:<10} {d['chunk_count']:>6}  {d['file_name']}"
            if d["error"]:
                line += f"  [red]{d['failed_stage']}: {d['error'][:120]}[/red]"
            out.print(line, highlight=False)


@app.command()
def revectorize(
    document_id: DocumentArg = None,
    project: ProjectFilterOpt = None,
    queue: QueueOpt = False,
) -> None:
    """Re-vectorize a document or every document of a project."""
    if not document_id and not project:
        raise fail("give a document id or --project")
    with open_runtime(get_settings()) as runtime, exit_on(services.NotFound, ValueError):
        with runtime.sessions() as session:
            if document_id:
                doc = services.get_document(session, uuid.UUID(document_id))
                jobs = [(doc.id, services.request_revectorize(session, document=doc))]
            else:
                found = services.find_project(session, project or "")
                jobs = services.revectorize_project(session, project=found)
            outcomes = run_jobs(runtime, session, jobs, queue=queue)
        if outcomes is not None:
            out.print(format_outcomes(outcomes) or "nothing to do")


@app.command()
def replace(
    document_id: Annotated[str, typer.Argument(help="A document id.")],
    file: Annotated[Path, typer.Argument(help="The document's new version.")],
    queue: QueueOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Give a document a new version of its file: same id, its old chunks replaced, only the
    changed chunks embedded."""
    if not file.is_file():
        raise fail(f"{file} is not a file")
    with open(file, "rb") as f:
        head = f.read(8192)
    with open_runtime(get_settings()) as runtime, exit_on(services.NotFound, DocvecError):
        # Refused like an upload before the good version is given up (the API: 422, 415).
        if not head:
            raise fail(f"{file}: the file is empty")
        detect_type(head, file.name)
        with runtime.sessions() as session:
            try:
                doc = services.get_document(session, uuid.UUID(document_id), for_update=True)
            except ValueError as exc:
                raise fail(f"document {document_id} not found") from exc
            # The file's name, unless it is the document's own base name (a path recorded by
            # `docvec ingest` stays, so that the next ingest finds the document by it).
            name: str | None = services.sanitize_file_name(file.name)
            if name == services.sanitize_file_name(doc.file_name):
                name = None
            result = services.replace_document(
                session,
                document=doc,
                storage=runtime.storage,
                path=file,
                file_name=name,
                max_bytes=runtime.settings.max_upload_bytes,
            )
            replaced_id, changed = doc.id, result.changed
            jobs = result.jobs
            if result.changed and not jobs and not queue:
                # A job on its way elsewhere: run it here too (that one then finds it done).
                jobs = [(doc.id, doc.generation)]
            outcomes = run_jobs(runtime, session, jobs, queue=queue) if result.changed else None
            if result.old_uri is not None:
                # Committed by run_jobs: the old version's file goes unless another has it.
                services.delete_unreferenced_files(session, runtime.storage, [result.old_uri])
    data = {
        "document_id": str(replaced_id),
        "changed": changed,
        "outcomes": dict(outcomes) if outcomes is not None else None,
    }
    if as_json:
        print_json(data)
    elif not changed:
        out.print("unchanged: the document already has these bytes")
    elif outcomes is not None:
        out.print(format_outcomes(outcomes) or "nothing to do")


@app.command()
def retry(
    failed: Annotated[bool, typer.Option("--failed", help="Retry every failed document.")] = False,
    project: ProjectFilterOpt = None,
    queue: QueueOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Retry failed documents (of one project, or all) in bulk."""
    if not failed:
        raise fail("say what to retry: --failed")
    with open_runtime(get_settings()) as runtime, runtime.sessions() as session:
        with exit_on(services.NotFound):
            only = services.find_project(session, project) if project else None
        jobs = services.retry_failed(session, project=only)
        outcomes = run_jobs(runtime, session, jobs, queue=queue)
    if outcomes is None:
        return
    if as_json:
        print_json({"retried": len(jobs), "outcomes": dict(outcomes)})
    else:
        out.print(f"retried {len(jobs)}: " + format_outcomes(outcomes))


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
    with open_runtime(get_settings()) as runtime, runtime.sessions() as session:
        # Every collection an index version lives in, against that version's rows.
        reports = services.reconcile_all(session, store_for=runtime.store_for)
        if not reports:
            reports = [
                (runtime.vector_store, services.reconcile(session, store=runtime.vector_store))
            ]
        jobs: list[services.Job] = []
        for store, one in reports:
            if fix and not one.clean:
                jobs += services.repair(session, store=store, report=one)
        if jobs:
            run_jobs(runtime, session, jobs, queue=queue)
        else:
            session.commit()
    report = services.ReconcileReport.merged([r for _, r in reports])
    data = report.as_dict()
    if as_json:
        print_json(data)
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
