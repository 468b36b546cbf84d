"""``docvec ingest``: store, chunk, embed and index a file or a folder, in this process."""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from app import services
from app.cli._utilities import (
    JsonOpt,
    ProjectOpt,
    app,
    exit_on,
    fail,
    open_runtime,
    out,
    print_json,
    progress_display,
)
from app.config import get_settings
from app.db.models import DocumentStatus, Project
from app.errors import DocvecError
from app.runtime import Runtime
from app.storage import sha256_file

#: ``(document_id, generation, file name relative to the ingested folder)``
_Todo = tuple[uuid.UUID, int, str]


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(help="A file or a folder (read recursively).")],
    project: ProjectOpt,
    retry_failed: Annotated[
        bool, typer.Option(help="Process again files that failed in an earlier run.")
    ] = False,
    keep_old_versions: Annotated[
        bool,
        typer.Option(
            help="Record a changed file as a new document beside its old version, instead of "
            "replacing the document recorded under its path."
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Store, chunk, embed and index documents, in this process.

    A file whose path (relative to PATH) names exactly one document of the project, with other
    bytes, is a new version of that document: it replaces it in place (same id, its old chunks
    gone; only changed chunks are embedded) and is reported as updated.
    """
    settings = get_settings()
    files = _files(path)
    report: dict[str, Any] = {
        "project": project,
        "vectorized": [],
        "failed": [],
        "skipped": [],
        # New versions of documents already recorded (also in vectorized or failed once run).
        "updated": [],
        # Changed files added as new documents although documents of their name exist.
        "added_beside": [],
        "chunks": 0,
    }
    with open_runtime(settings) as runtime, exit_on(DocvecError):
        logging.getLogger("app.pipeline.process").setLevel(logging.CRITICAL)  # the table reports
        started = time.perf_counter()
        todo = _record(
            runtime,
            path,
            files,
            project=project,
            retry_failed=retry_failed,
            replace=not keep_old_versions,
            report=report,
        )
        _run(runtime, todo, report=report, quiet=as_json)
    wall = time.perf_counter() - started
    report["wall_time_s"] = round(wall, 2)
    report["chunks_per_s"] = round(report["chunks"] / wall, 2) if wall else 0.0
    if as_json:
        print_json(report)
        return
    _print_report(report)


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise fail(f"{path} does not exist")
    # Hidden files and folders (.git, .DS_Store, ~$ lock files stay: they are "documents" users
    # dropped) are skipped like every other ingestion tool does.
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )


def _record(
    runtime: Runtime,
    path: Path,
    files: list[Path],
    *,
    project: str,
    retry_failed: bool,
    replace: bool,
    report: dict[str, Any],
) -> list[_Todo]:
    """Store and record every file; the documents to process, the others in ``report``.

    ``replace``: a file with new bytes whose name matches exactly one document of the project
    (by its path relative to ``path``, as recorded) and that no other file of this run already
    claimed becomes that document's new version (:func:`app.services.replace_document`); with
    several such documents nothing is guessed — it is added as a new document and reported in
    ``added_beside``. The replaced versions' files are removed after the commit when no
    document references them.
    """
    with runtime.sessions() as session:
        found_project = services.get_or_create_project(session, name=project)
        project_id = found_project.id
        session.commit()
        # Refuse before storing anything when the settings describe another index than the
        # project's active version (IndexMismatch names both and the remedy).
        runtime.active_index(session, found_project)
    todo: list[_Todo] = []
    seen: dict[uuid.UUID, str] = {}
    old_uris: list[str] = []
    with runtime.sessions() as session:
        found = session.get(Project, project_id)
        assert found is not None
        by_name = services.documents_by_name(session, project_id=project_id) if replace else {}
        for f in files:
            rel = str(f.relative_to(path)) if path.is_dir() else f.name
            name = services.sanitize_relative_path(rel)
            named = by_name.get(name, [])
            if (
                replace
                and named
                and services.document_with_content(
                    session, project_id=project_id, sha256=sha256_file(f)
                )
                is None
            ):
                if len(named) == 1 and named[0] not in seen:
                    doc = services.get_document(session, named[0], for_update=True)
                    replaced = services.replace_document(
                        session,
                        document=doc,
                        storage=runtime.storage,
                        path=f,
                        max_bytes=runtime.settings.max_upload_bytes,
                    )
                    seen[doc.id] = rel
                    if replaced.old_uri is not None:
                        old_uris.append(replaced.old_uri)
                    report["updated"].append({"file": rel, "document_id": str(doc.id)})
                    # Run here even when a queued job would (its run then finds it done).
                    todo.append((doc.id, doc.generation, rel))
                    continue
                report["added_beside"].append(
                    {
                        "file": rel,
                        "documents": [str(d) for d in named],
                        "reason": (
                            f"{len(named)} documents are named {name!r}: not guessing which "
                            "one this file replaces"
                            if len(named) > 1
                            else f"the document named {name!r} is another file's in this run"
                        ),
                    }
                )
            added = services.add_document(
                session,
                project=found,
                storage=runtime.storage,
                file_name=name,
                path=f,
                max_bytes=runtime.settings.max_upload_bytes,
                keep_folders=True,
            )
            doc = added.document
            if doc.id in seen:
                report["skipped"].append({"file": rel, "reason": f"same content as {seen[doc.id]}"})
                continue
            seen[doc.id] = rel
            if added.created:
                by_name.setdefault(doc.file_name, []).append(doc.id)
            if added.created or doc.status in (DocumentStatus.pending, DocumentStatus.processing):
                todo.append((doc.id, doc.generation, rel))
            elif doc.status == DocumentStatus.failed and retry_failed:
                todo.append((doc.id, services.request_revectorize(session, document=doc), rel))
            else:
                why = "unchanged (same sha256), already " + doc.status
                if doc.status == DocumentStatus.failed:
                    why += f": {doc.error}"
                if replace and named and doc.id not in named:
                    # Its path's document cannot take bytes another document holds.
                    why = (
                        f"same content as document {doc.id} ({doc.file_name}); the document "
                        f"named {name!r} keeps its version"
                    )
                report["skipped"].append({"file": rel, "reason": why})
        session.commit()
        # The replaced versions' files, now that nothing committed points at them (unless
        # another document has the same bytes).
        services.delete_unreferenced_files(session, runtime.storage, old_uris)
    return todo


def _run(runtime: Runtime, todo: list[_Todo], *, report: dict[str, Any], quiet: bool) -> None:
    """Process ``todo`` with a progress display, then optimize; the outcomes go in ``report``."""
    from app.pipeline.ingest import process_many
    from app.pipeline.process import RunOutcome

    chunks_done = 0
    with progress_display(quiet=quiet, extra=True) as progress:
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
            runtime,
            [(doc_id, generation) for doc_id, generation, _ in todo],
            on_chunks=on_chunks,
            on_started=on_started,
        )
        for result in results:
            rel = names[result.document_id]
            if result.outcome == RunOutcome.succeeded:
                report["vectorized"].append({"file": rel, "chunks": result.chunks})
                report["chunks"] += result.chunks
            elif result.outcome == RunOutcome.skipped:
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
            optimize_started = time.perf_counter()
            runtime.vector_store.optimize()
            report["optimize_s"] = round(time.perf_counter() - optimize_started, 2)


def _print_report(report: dict[str, Any]) -> None:
    if report["failed"]:
        failed = Table(title="failed", title_justify="left")
        failed.add_column("file", overflow="fold")
        failed.add_column("stage")
        failed.add_column("reason", overflow="fold")
        for f in report["failed"]:
            failed.add_row(f["file"], f["stage"] or "", f["reason"] or "")
        out.print(failed)
    if report["skipped"]:
        out.print(
            f"[dim]{len(report['skipped'])} file(s) skipped (unchanged or duplicate): "
            "nothing to do for them.[/dim]"
        )
    for f in report["added_beside"]:
        out.print(f"[yellow]{f['file']}: added as a new document; {f['reason']}[/yellow]")
    summary = Table(title=f"ingest into project {report['project']!r}", title_justify="left")
    summary.add_column("vectorized", justify="right")
    summary.add_column("updated (new versions)", justify="right")
    summary.add_column("failed", justify="right")
    summary.add_column("skipped (duplicates)", justify="right")
    summary.add_column("chunks", justify="right")
    summary.add_column("wall time", justify="right")
    summary.add_column("chunks/s", justify="right")
    summary.add_row(
        str(len(report["vectorized"])),
        str(len(report["updated"])),
        str(len(report["failed"])),
        str(len(report["skipped"])),
        str(report["chunks"]),
        f"{report['wall_time_s']:.1f} s",
        f"{report['chunks_per_s']:.1f}",
    )
    out.print(summary)
