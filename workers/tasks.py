"""Thin Celery tasks: they take ids, call the pipeline, and turn its outcome into retry or done.

What Flower shows is what happened: a document that fails for good ends its task in FAILURE
(:class:`DocumentFailed`, naming the error class, stage and reason), a transient failure is a
RETRY (``task.retry``), and a run that had nothing to do (superseded, already vectorized) is a
SUCCESS whose result says so.
"""

from __future__ import annotations

import logging
import os
import random
import uuid
from datetime import timedelta
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init, worker_process_shutdown
from sqlalchemy import or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from app import outbox, services
from app.config import get_settings
from app.db.models import Document, IndexState, IndexVersion, utcnow
from app.db.session import session_scope
from app.errors import TransientError
from app.jobqueue import JobQueue, decode_jobs, encode_jobs
from app.pipeline.build import build_step
from app.pipeline.ingest import process_batch
from app.pipeline.process import ProcessResult, RunOutcome, process_document
from app.runtime import Runtime
from workers.celery_app import (
    BUILD_INDEX_VERSION,
    PROCESS_DOCUMENT,
    PROCESS_DOCUMENTS,
    SWEEP,
    celery_app,
)

log = logging.getLogger(__name__)
_settings = get_settings()
_runtime: Runtime | None = None


class DocumentFailed(Exception):
    """Raised by the task when its document failed for good, so Celery (and Flower) record a
    FAILURE: ``"<ErrorClass> at <stage>: <reason>"``. The document's row already says so."""


def runtime() -> Runtime:
    """This worker process's parts, built on first use — after the prefork, so no SQL connection,
    model or vector-store client is ever shared across processes."""
    global _runtime
    if _runtime is None:
        # A prefork child runs one task at a time: one SQL connection (plus overflow) is enough.
        _runtime = Runtime(_settings, pool_size=1, transient_exceptions=(SoftTimeLimitExceeded,))
    return _runtime


@worker_process_init.connect
def _start_child(**_: Any) -> None:
    """Fresh parts in each prefork child, and the model loaded now rather than inside the first
    task, where its load time would count against the task's time limits."""
    global _runtime
    _runtime = None
    try:
        provider = runtime().provider
        # Only a local model is worth loading up front; a remote warm-up would be a paid
        # request per child, and could block start-up through a provider outage.
        if not provider.remote:
            provider.embed_query("warm-up")
    except Exception as exc:  # the first task reports a broken provider properly
        log.warning("embedding provider not warmed up: %s", exc)


@worker_process_shutdown.connect
def _close(**_: Any) -> None:
    if _runtime is not None:
        _runtime.close()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def retry_countdown(retries: int, retry_after_s: float | None = None) -> float:
    """Seconds before retry number ``retries`` (0-based): the configured backoff (default
    60/300/900 s) times a jitter factor, never less than what the server asked (Retry-After)."""
    base = _settings.backoff_delay(retries)
    jitter = _settings.retry_jitter
    delay = base * random.uniform(1 - jitter, 1 + jitter)
    return max(delay, retry_after_s or 0.0)


def _retry(
    task: Task[Any, Any], document_id: str, generation: int, countdown: float, exc: Exception | None
) -> Exception:
    # The retry waits in the broker (held by a worker until due) like a fresh job: mark the
    # document queued until then, so the sweep does not take it for a lost one.
    due = utcnow() + timedelta(seconds=countdown)
    try:
        with session_scope(runtime().sessions) as session:
            session.execute(
                update(Document)
                .where(Document.id == uuid.UUID(document_id), Document.generation == generation)
                .values(queued_at=due)
            )
    except SQLAlchemyError:
        log.warning("could not mark %s queued for its retry", document_id)
    return task.retry(exc=exc, countdown=countdown)


@celery_app.task(
    name=PROCESS_DOCUMENT,
    bind=True,
    max_retries=_settings.max_retries,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=_settings.task_soft_time_limit_s,
    time_limit=_settings.task_time_limit_s,
    # An expected outcome, not a crash: Celery records FAILURE (Flower shows it) and logs one
    # line without a traceback.
    throws=(DocumentFailed,),
)
def process_document_task(
    self: Task[Any, Any], document_id: str, generation: int
) -> dict[str, Any]:
    """Vectorize one document (by id) for the given generation; retries transient failures.
    The relay sends :func:`process_documents_task` messages now; this one serves messages an
    older docvec published."""
    retries = int(self.request.retries)
    final = retries >= (self.max_retries or 0)
    try:
        result = process_document(
            runtime(),
            uuid.UUID(document_id),
            generation,
            task_id=self.request.id,
            attempt=retries + 1,
            final_attempt=final,
        )
    except TransientError as exc:  # the database could not even record the outcome
        if final:
            raise
        countdown = retry_countdown(retries, exc.retry_after_s)
        raise _retry(self, document_id, generation, countdown, exc) from exc
    if result.outcome == RunOutcome.retrying:
        countdown = retry_countdown(retries, result.retry_after_s)
        raise _retry(self, document_id, generation, countdown, None)
    if result.outcome == RunOutcome.failed:
        raise DocumentFailed(f"{result.error_class} at {result.stage}: {result.error}")
    return {"document_id": document_id, "outcome": str(result.outcome), "chunks": result.chunks}


@celery_app.task(
    name=PROCESS_DOCUMENTS,
    bind=True,
    # Retries of the message itself, for runs stopped before their documents (the database
    # away, the soft time limit between two documents); a document's own retries are counted
    # on its attempt rows (app.pipeline.ingest.attempt_runs).
    max_retries=_settings.max_retries,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=_settings.task_soft_time_limit_s,
    time_limit=_settings.task_time_limit_s,
    throws=(DocumentFailed,),
)
def process_documents_task(self: Task[Any, Any], jobs: list[list[Any]]) -> dict[str, Any]:
    """Vectorize several documents (``[[document_id, generation], ...]``) with shared provider
    requests (app/pipeline/ingest.py: process_batch); each keeps its own attempt and outcome.

    Documents that end ``retrying`` are queued again together, through the outbox, after the
    longest of their backoffs (so the retry is batched too). The task is a FAILURE in Flower when
    any of its documents failed for good, naming each; the others' outcomes are in its message
    and in SQL.
    """
    pairs = decode_jobs(jobs)
    rt = runtime()
    batch = process_batch(rt, pairs, max_retries=_settings.max_retries, task_id=self.request.id)
    generations = dict(pairs)
    resend = list(batch.not_run)
    stopped: BaseException | None = batch.stopped
    if stopped is not None:
        log.warning(
            "task %s stopped before %d document(s): %s", self.request.id, len(resend), stopped
        )
    retrying = [r for r in batch.results if r.outcome == RunOutcome.retrying]
    if retrying:
        countdown = max(
            retry_countdown(batch.runs[r.document_id].attempt - 1, r.retry_after_s)
            for r in retrying
        )
        again = [(r.document_id, generations[r.document_id]) for r in retrying]
        try:
            _retry_later(again, countdown)
        except SQLAlchemyError as exc:  # the database went away: the message itself retries
            resend += again
            stopped = stopped or exc
    if resend:
        raise self.retry(
            args=(encode_jobs(resend),),
            countdown=retry_countdown(int(self.request.retries)),
            exc=stopped if isinstance(stopped, Exception) else None,
        )
    return _batch_outcome(batch.results)


def _retry_later(jobs: list[tuple[uuid.UUID, int]], countdown: float) -> None:
    queue = JobQueue(_settings)
    try:
        outbox.retry_later(
            runtime().sessions, jobs, countdown_s=countdown, publish_later=queue.enqueue_batch
        )
    finally:
        queue.close()


def _batch_outcome(results: list[ProcessResult]) -> dict[str, Any]:
    """The task's result, or :class:`DocumentFailed` naming each document that failed for good."""
    failed = [r for r in results if r.outcome == RunOutcome.failed]
    if failed:
        reasons = "; ".join(
            f"document {r.document_id}: {r.error_class} at {r.stage}: {r.error}" for r in failed
        )
        others = len(results) - len(failed)
        raise DocumentFailed(
            f"{len(failed)} of {len(results)} document(s) failed for good: {reasons}"
            + (f" ({others} other(s) of this task did not fail)" if others else "")
        )
    return {
        "documents": len(results),
        "outcomes": {str(r.document_id): str(r.outcome) for r in results},
        "chunks": sum(r.chunks for r in results),
    }


@celery_app.task(name=SWEEP, soft_time_limit=120, time_limit=180, acks_late=False)
def sweep_task() -> dict[str, int]:
    """Close abandoned attempts, queue documents stuck in ``processing`` or lost while
    ``pending`` (see :func:`app.services.sweep_stuck`), then relay the outbox."""
    queue = JobQueue(_settings)
    try:
        try:
            depth: int | None = queue.depth()
        except Exception as exc:  # the sweep still closes what it can; lost ones wait
            log.warning("sweep: queue depth unknown: %s", exc)
            depth = None
        with session_scope(runtime().sessions) as session:
            result = services.sweep_stuck(
                session,
                stuck_after_s=_settings.stuck_after_s,
                pending_after_s=_settings.sweep_pending_after_s,
                queue_depth=depth,
                max_runs=_settings.max_retries + 1,
            )
        relayed = outbox.relay(runtime().sessions, queue.publisher().flushing())
        builds = _resume_builds(queue)
    finally:
        queue.close()
    if result.requeued or result.failed or result.abandoned:
        log.warning(
            "sweep: re-queued %d, failed %d, abandoned attempts closed %d",
            len(result.requeued),
            len(result.failed),
            result.abandoned,
        )
    return {
        "requeued": len(result.requeued),
        "failed": len(result.failed),
        "abandoned": result.abandoned,
        "published": relayed.published,
        "builds_resumed": builds,
    }


def _resume_builds(queue: JobQueue) -> int:
    """Send a step for every index build that no step holds (its worker died, or its next step
    was never published): a build is never left half done."""
    with session_scope(runtime().sessions) as session:
        orphans = list(
            session.scalars(
                select(IndexVersion.id).where(
                    IndexVersion.state == IndexState.building,
                    or_(IndexVersion.lease_until.is_(None), IndexVersion.lease_until < utcnow()),
                )
            )
        )
    sent = 0
    for version_id in orphans:
        try:
            queue.enqueue_build(version_id)
            sent += 1
        except Exception as exc:  # the next sweep tries again
            log.warning("sweep: could not resume the build of %s: %s", version_id, exc)
    return sent


@celery_app.task(
    name=BUILD_INDEX_VERSION,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=_settings.task_soft_time_limit_s,
    time_limit=_settings.task_time_limit_s,
)
def build_index_version_task(self: Task[Any, Any], version_id: str) -> dict[str, Any]:
    """One step of an index version's build (app/pipeline/build.py); sends the next step while
    documents remain. A transient error ends the step: the sweep resumes the build."""
    budget = min(_settings.index_build_step_s, _settings.task_soft_time_limit_s / 2)
    try:
        result = build_step(
            runtime(),
            uuid.UUID(version_id),
            budget_s=budget,
            lease_s=_settings.index_build_lease_s,
            keep_versions=_settings.index_keep_versions,
        )
    except TransientError as exc:
        log.warning("index build %s paused: %s (the sweep resumes it)", version_id, exc)
        return {"version_id": version_id, "state": "paused", "error": str(exc)}
    if result.remaining:
        queue = JobQueue(_settings)
        try:
            queue.enqueue_build(uuid.UUID(version_id))
        finally:
            queue.close()
    return {
        "version_id": version_id,
        "state": str(result.state),
        "built": result.built,
        "failed": result.failed,
        "remaining": result.remaining,
    }
