"""``docvec index``: a project's index versions — create (build in the background), list,
activate (or roll back), cancel, drop. See app/indexes.py and app/pipeline/build.py."""

from __future__ import annotations

import uuid
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table

from app import indexes, services
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
from app.db.models import IndexState, IndexVersion
from app.errors import DocvecError
from app.runtime import Runtime

index_app = typer.Typer(
    no_args_is_help=True,
    help=(
        "Index versions: every index records its model and chunking; a change builds a new "
        "version beside the active one, which keeps serving search until the swap."
    ),
)
app.add_typer(index_app, name="index")

QueueOpt = Annotated[
    bool, typer.Option("--queue", help="Let the Celery workers build it instead of this process.")
]


@index_app.command("create")
def create(
    project: ProjectOpt,
    provider: Annotated[str | None, typer.Option(help="local, openai, ollama or gemini.")] = None,
    model: Annotated[str | None, typer.Option(help="Model name (the provider's default).")] = None,
    dimensions: Annotated[
        int | None, typer.Option(help="Output dimensions (models that can shorten).", min=1)
    ] = None,
    base_url: Annotated[str | None, typer.Option(help="Server URL of the provider.")] = None,
    api_key_env: Annotated[
        str | None, typer.Option(help="Name of the environment variable holding the key.")
    ] = None,
    document_prefix: Annotated[str | None, typer.Option(help="Text before each chunk.")] = None,
    query_prefix: Annotated[str | None, typer.Option(help="Text before each query.")] = None,
    chunk_size: Annotated[int | None, typer.Option(help="Chunk size (re-chunks).", min=16)] = None,
    chunk_overlap: Annotated[int | None, typer.Option(help="Chunk overlap.", min=0)] = None,
    image_provider: Annotated[
        str | None,
        typer.Option(
            help="Image model's provider: none, local, gemini or cohere (README, Images)."
        ),
    ] = None,
    image_model: Annotated[
        str | None, typer.Option(help="Image model name (the provider's default).")
    ] = None,
    image_model_path: Annotated[
        str | None, typer.Option(help="Folder of a local CLIP or SigLIP image model.")
    ] = None,
    image_dimensions: Annotated[
        int | None, typer.Option(help="Image vectors' size (models that can shorten).", min=1)
    ] = None,
    activate: Annotated[
        str, typer.Option(help="auto: swap when complete; manual: stop at ready.")
    ] = "auto",
    queue: QueueOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Start a new index version of the project; with no option it takes the settings."""
    if activate not in ("auto", "manual"):
        raise fail("--activate must be auto or manual")
    settings = get_settings()
    try:
        spec, follows = indexes.spec_for(
            settings,
            provider=provider,
            model=model,
            dimensions=dimensions,
            base_url=base_url,
            api_key_env=api_key_env,
            document_prefix=document_prefix,
            query_prefix=query_prefix,
            chunk_size=chunk_size,
            chunk_overlap=chunk_overlap,
            image_provider=image_provider,
            image_model=image_model,
            image_model_path=image_model_path,
            image_dimensions=image_dimensions,
        )
    except (ValidationError, DocvecError) as exc:
        raise fail(str(exc)) from exc
    with (
        open_runtime(settings) as runtime,
        exit_on(DocvecError, services.NotFound, indexes.VersionConflict),
    ):
        with runtime.sessions() as session:
            found = services.find_project(session, project)
            row = indexes.create_version(
                session,
                project=found,
                spec=spec,
                settings=settings,
                follows_settings=follows,
                activate="auto" if activate == "auto" else "manual",
            )
            version_id, number = row.id, row.version
            session.commit()
        out.print(f"index version {number} of {project!r}: {spec.describe()} — building")
        _build(runtime, version_id, queue=queue, quiet=as_json)
        _show(runtime, project, as_json=as_json)


def _build(runtime: Runtime, version_id: uuid.UUID, *, queue: bool, quiet: bool) -> None:
    """Hand the build to the workers, or run it here with a progress bar."""
    settings = runtime.settings
    if queue:
        from app.jobqueue import JobQueue

        jq = JobQueue(settings)
        try:
            jq.enqueue_build(version_id)
        except Exception as exc:
            out.print(f"the broker did not take the build ({exc}); the next sweep starts it")
        finally:
            jq.close()
        return
    from app.pipeline.build import run_build

    with runtime.sessions() as session:
        row = session.get(IndexVersion, version_id)
        assert row is not None
        total = indexes.progress(session, row).documents_total
    with progress_display(quiet=quiet) as bar:
        task = bar.add_task("building", total=total)

        def advance(built: int, failed: int) -> None:
            bar.update(task, completed=built + failed)

        result = run_build(
            runtime,
            version_id,
            keep_versions=settings.index_keep_versions,
            lease_s=settings.index_build_lease_s,
            on_document=advance,
        )
    runtime.vector_store.optimize()
    for problem in result.problems:
        out.print(f"gate: {problem}")


@index_app.command("list")
def list_versions(project: ProjectOpt, as_json: JsonOpt = False) -> None:
    """The project's index versions, with their build progress."""
    with open_runtime(get_settings()) as runtime, exit_on(DocvecError, services.NotFound):
        _show(runtime, project, as_json=as_json)


def _show(runtime: Runtime, project: str, *, as_json: bool) -> None:
    with runtime.sessions() as session:
        found = services.find_project(session, project)
        rows = [indexes.as_dict(session, v) for v in indexes.versions_of(session, found.id)]
    if as_json:
        print_json({"project": project, "versions": rows})
        return
    table = Table("version", "state", "model", "dims", "chunks", "documents", "failed", "eta")
    for r in rows:
        p = r["progress"]
        assert isinstance(p, dict)
        chunking = r["chunking"]
        assert isinstance(chunking, dict)
        table.add_row(
            str(r["version"]),
            str(r["state"]),
            f"{r['provider']}:{r['model']}",
            str(r["dimensions"] or "?"),
            f"{chunking['chunk_size']}/{chunking['chunk_overlap']} {chunking['unit']}",
            f"{p['documents_done']}/{p['documents_total']}",
            str(p["failures"]),
            "" if p["eta_s"] is None else f"{p['eta_s']:.0f} s",
        )
    out.print(table)
    for r in rows:
        if r["error"]:
            out.print(f"version {r['version']}: {r['error']}")


@index_app.command("activate")
def activate(
    version: Annotated[int, typer.Argument(help="The version number.")],
    project: ProjectOpt,
    queue: QueueOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Make a complete version the active one; an older (retired) one first catches up with
    what changed since it was retired, then swaps — a rollback."""
    from app.pipeline.build import activate_version

    settings = get_settings()
    with (
        open_runtime(settings) as runtime,
        exit_on(DocvecError, services.NotFound, indexes.VersionConflict, LookupError),
    ):
        with runtime.sessions() as session:
            found = services.find_project(session, project)
            row = indexes.get_version(session, found.id, version)
            version_id, state = row.id, row.state
            complete = indexes.progress(session, row).complete
            if state == IndexState.retired and not complete:
                indexes.start_catch_up(session, row)
                session.commit()
        if state == IndexState.retired and not complete:
            out.print(f"version {version} is behind: catching up, then it activates")
            _build(runtime, version_id, queue=queue, quiet=as_json)
        else:
            activate_version(runtime, version_id, keep_versions=settings.index_keep_versions)
        _show(runtime, project, as_json=as_json)


@index_app.command("cancel")
def cancel(version: Annotated[int, typer.Argument()], project: ProjectOpt) -> None:
    """Stop a build; the active version is untouched (``drop`` removes the new collection)."""
    with (
        open_runtime(get_settings()) as runtime,
        exit_on(DocvecError, services.NotFound, indexes.VersionConflict, LookupError),
        runtime.sessions() as session,
    ):
        found = services.find_project(session, project)
        indexes.cancel(session, indexes.get_version(session, found.id, version))
        session.commit()
    out.print(f"version {version} cancelled")


@index_app.command("drop")
def drop(version: Annotated[int, typer.Argument()], project: ProjectOpt) -> None:
    """Remove a version that is not active, with its collection (and its chunk rows when no
    other version reads them)."""
    from app.pipeline.build import drop_version

    with (
        open_runtime(get_settings()) as runtime,
        exit_on(DocvecError, services.NotFound, indexes.VersionConflict, LookupError),
    ):
        with runtime.sessions() as session:
            found = services.find_project(session, project)
            row = indexes.get_version(session, found.id, version)
            if row.state == IndexState.building:
                raise fail(f"version {version} is being built: cancel it first")
            ref = indexes.VersionRef.of(row)
        drop_version(runtime, ref)
        runtime.drop_store(ref.collection)
    out.print(f"version {version} dropped")
