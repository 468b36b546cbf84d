"""What the command modules share: the root Typer app, the consoles, common options, helpers.

The pipeline runner, Celery, uvicorn and prometheus-client are imported inside the commands and
helpers that use them, so that ``docvec --help`` and the small commands start quickly.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from app import outbox, services
from app.config import Settings
from app.db import migrate as db_migrate
from app.runtime import Runtime

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from app.pipeline.process import RunOutcome

HELP = (
    "The docvec command line: documents in, searchable vectors out.\n\n"
    "'ingest' runs the pipeline in this process on whatever the settings point at; by default "
    "the embedded defaults under DOCVEC_DATA_DIR (SQLite, Qdrant Edge, the local model). 'api', "
    "'worker', 'beat' and 'flower' start the service processes."
)

app = typer.Typer(add_completion=False, no_args_is_help=True, help=HELP)
out = Console()
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
ProjectOpt = Annotated[str, typer.Option("--project", "-p", help="Project name (or id).")]
ProjectFilterOpt = Annotated[
    str | None, typer.Option("--project", "-p", help="Project name (or id).")
]
QueueOpt = Annotated[
    bool, typer.Option(help="Enqueue to the Celery workers instead of running here.")
]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr; return the exit to raise."""
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


@contextmanager
def exit_on(*errors: type[Exception]) -> Iterator[None]:
    """Turn ``errors`` raised inside the block into ``error: <message>`` and exit code 1."""
    try:
        yield
    except errors as exc:
        raise fail(str(exc)) from exc


@contextmanager
def open_runtime(settings: Settings) -> Iterator[Runtime]:
    """The runtime for one command (the schema migrated first if configured), closed after."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # pypdf reports every recoverable oddity of a PDF as a warning; the document's outcome says
    # what matters.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    if settings.auto_migrate:
        db_migrate.upgrade(settings.sqlalchemy_url)
    try:
        runtime = Runtime(settings)
    except ValueError as exc:  # a setting or an asset the runtime cannot start with
        raise fail(str(exc)) from exc
    try:
        yield runtime
    finally:
        runtime.close()


def progress_display(*, quiet: bool, extra: bool = False) -> Progress:
    """Progress bars on stderr, hidden when it is no terminal and ``quiet`` (``--json``).

    ``extra``: a text column after the counts, filled from each task's ``extra`` field.
    """
    columns: list[ProgressColumn] = [
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
    ]
    if extra:
        columns.append(TextColumn("{task.fields[extra]}"))
    columns.append(TimeElapsedColumn())
    return Progress(*columns, console=err, disable=not err.is_terminal and quiet)


def print_json(data: object) -> None:
    """The ``--json`` output: one JSON document on stdout (what JSON cannot hold, as text)."""
    print(json.dumps(data, default=str))


def run_jobs(
    runtime: Runtime, session: Session, jobs: Sequence[services.Job], *, queue: bool
) -> Counter[RunOutcome] | None:
    """Commit ``session`` and hand ``jobs`` to the workers, or run them here and optimize.

    With ``queue`` the jobs are recorded in the outbox in ``session``'s transaction before it
    commits (app/outbox.py), then published: a broker that is down loses nothing, the jobs are
    published by the next relay (the API's, or the sweep's). Returns the outcomes of a run here,
    None when queued. The search index is built once at the end (a no-op for stores that keep it
    up to date), when any document was written.
    """
    if queue:
        outbox.put_jobs(session, jobs)
        session.commit()
        publish_outbox(runtime, len(jobs))
        return None
    session.commit()
    from app.pipeline.ingest import process_many
    from app.pipeline.process import RunOutcome

    outcomes = Counter(result.outcome for result in process_many(runtime, jobs))
    if outcomes[RunOutcome.succeeded]:
        runtime.vector_store.optimize()
    return outcomes


def publish_outbox(runtime: Runtime, count: int) -> None:
    """Relay the outbox to the broker and say what happened to the ``count`` new jobs."""
    from app.jobqueue import JobQueue

    queue = JobQueue(runtime.settings)
    try:
        # This process relays once and exits: nothing waits to fill a message.
        report = outbox.relay(runtime.sessions, queue.publisher().flushing())
    finally:
        queue.close()
    if report.ok:
        out.print(f"queued {count} document(s)")
    else:
        out.print(
            f"recorded {count} document(s); the broker is unreachable ({report.error}): they "
            "are queued as soon as it is back (the API's relay or the next sweep)"
        )


def format_outcomes(outcomes: Counter[RunOutcome]) -> str:
    """``failed: 1, succeeded: 2``: how many runs ended each way, in the order first seen."""
    return ", ".join(f"{outcome}: {n}" for outcome, n in outcomes.items())
