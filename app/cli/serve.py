"""The service processes: ``migrate``, ``api``, ``worker``, ``beat`` and ``flower``."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from celery import Celery

from app.cli._utilities import app, err, out
from app.config import Settings, get_settings
from app.db import migrate as db_migrate

#: Commands whose unknown options and extra arguments are passed on to Celery.
_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema (Alembic)."""
    db_migrate.upgrade(get_settings().sqlalchemy_url)
    out.print("database is at the newest migration")


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Default: DOCVEC_API_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Default: DOCVEC_API_PORT.")] = None,
) -> None:
    """Run the HTTP API (FastAPI under uvicorn). OpenAPI docs at /docs."""
    import uvicorn

    from app.api.access_log import log_config

    settings = get_settings()
    uvicorn.run(
        "app.api.main:create_app",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        log_level=settings.log_level.lower(),
        # Credentials sent in a URL by mistake never reach the access log.
        log_config=log_config(),
    )


@app.command(context_settings=_PASS_THROUGH)
def worker(
    ctx: typer.Context,
    concurrency: Annotated[
        int | None, typer.Option(help="Worker processes. Default: DOCVEC_WORKER_CONCURRENCY.")
    ] = None,
) -> None:
    """Run a Celery worker on the docvec queue (extra arguments go to Celery).

    Prometheus metrics of the worker and all its child processes are served on
    DOCVEC_WORKER_METRICS_PORT (default 9808; 0 turns it off).
    """
    settings = get_settings()
    processes = concurrency or settings.worker_concurrency
    folder = settings.embedded_vector_store
    if folder is not None and processes > 1:
        # Qdrant Edge (and qdrant-client's local mode) lock their folder to one process: a
        # second pool process could never open it. Run one, and say why.
        err.print(
            f"[yellow]the embedded vector store ({folder}) opens in one process only: running 1 "
            f"worker process instead of {processes}; for more, point DOCVEC_QDRANT_URL at a "
            "Qdrant server or use DOCVEC_VECTOR_STORE=pgvector[/yellow]"
        )
        processes = 1
    if settings.worker_metrics_port:
        _serve_worker_metrics(settings)
    from celery.signals import worker_shutting_down

    from workers.celery_app import celery_app

    asked_to_stop: list[str] = []

    @worker_shutting_down.connect(weak=False)
    def _asked(sig: str = "", **_: object) -> None:
        asked_to_stop.append(sig)

    argv = [
        "worker",
        f"--queues={settings.queue}",
        f"--concurrency={processes}",
        "--prefetch-multiplier=1",
        f"--loglevel={settings.log_level}",
        "--hostname=docvec@%h",
        *ctx.args,
    ]
    code = _run_celery(celery_app, argv)
    if code == 0 and not asked_to_stop:
        # Celery can stop on an "Unrecoverable error" (seen: kombu's Redis transport during a
        # broker restart) and still exit 0; a supervisor that restarts on failure would then
        # leave the worker down. Nobody asked it to stop, so it failed.
        err.print("worker stopped without being asked to (see the log above): exiting 1")
        raise SystemExit(1)
    raise SystemExit(code)


def _run_celery(celery_app: Celery, argv: list[str]) -> int:
    """Run Celery's command line and return its exit code.

    ``Celery.worker_main`` / ``start`` run it with ``standalone_mode=False`` and drop the code
    the worker exits with (celery 5.x ``app/base.py``), so a failed worker would exit 0.
    """
    import click
    from celery.bin.celery import celery as celery_cli

    celery_cli.params[0].default = celery_app  # what Celery.start does: the --app default
    try:
        code = celery_cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    finally:
        celery_cli.params[0].default = None
    return int(code or 0)


def _serve_worker_metrics(settings: Settings) -> None:
    # app.entry pointed prometheus-client at this worker's multiprocess folder before anything
    # imported it: every prefork child writes its samples there; this process serves their sum.
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        err.print("[yellow]metrics not served: start workers with the `docvec` command[/yellow]")
        return
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped upstream
    try:
        start_http_server(settings.worker_metrics_port, registry=registry)
    except OSError as exc:
        err.print(
            f"[yellow]metrics not served: port {settings.worker_metrics_port} is taken ({exc}); "
            "set DOCVEC_WORKER_METRICS_PORT per worker on one machine[/yellow]"
        )


@app.command(context_settings=_PASS_THROUGH)
def beat(ctx: typer.Context) -> None:
    """Run Celery beat: schedules the sweep for stuck documents (run exactly one per broker)."""
    from workers.celery_app import celery_app

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    schedule = settings.data_dir / "celerybeat-schedule"
    celery_app.start(
        ["beat", f"--schedule={schedule}", f"--loglevel={settings.log_level}", *ctx.args]
    )


@app.command(context_settings=_PASS_THROUGH)
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
