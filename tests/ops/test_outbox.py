"""A crash at any step of the enqueue path loses no document and runs none twice, on both brokers.

A driver process does what the API and the sweep do — record the upload (or the sweep's verdict)
in SQL, commit, publish through the outbox relay — and SIGKILLs itself at one step:

* ``before_commit``: the upload was never acknowledged, nothing is recorded; the client's retry
  uploads again;
* ``after_commit``: recorded, never published: the outbox row waits;
* ``after_publish``: published, but the outbox row not yet deleted: it will be published again;
* ``sweep_after_commit``: the sweep re-queued a stuck document and died before publishing.
* ``sweep_in_relay``: the sweep's relay died after the first of several publishes.

Then the real system takes over: a `docvec worker` process, and the sweep task sent through the
broker as `docvec beat` sends it. Every document must end vectorized by exactly one run.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, update

from app.config import Settings
from app.db.models import (
    AttemptOutcome,
    Document,
    DocumentStatus,
    OutboxEntry,
    VectorizationAttempt,
    utcnow,
)
from app.db.session import make_engine, make_session_factory
from app.jobqueue import SWEEP, JobQueue
from tests.ops.harness import start_worker, wait_until, war_and_peace_docs

pytestmark = pytest.mark.slow

DRIVER = textwrap.dedent(
    """
    import os, signal, sys, uuid
    from app import outbox, services
    from app.config import Settings
    from app.db.session import make_engine, make_session_factory
    from app.jobqueue import JobQueue
    from app.storage import FileStorage

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    point, name, path = sys.argv[1], sys.argv[2], sys.argv[3]
    settings = Settings()
    engine = make_engine(settings.sqlalchemy_url)
    sessions = make_session_factory(engine)
    queue = JobQueue(settings)
    storage = FileStorage(settings.files_dir)

    def publish_then_die(document_id, generation):
        queue.enqueue(document_id, generation)
        die()

    if point.startswith("sweep"):
        with sessions() as session:
            services.sweep_stuck(
                session,
                stuck_after_s=settings.stuck_after_s,
                pending_after_s=settings.sweep_pending_after_s,
                queue_depth=queue.depth(),
                max_runs=settings.max_retries + 1,
            )
            session.commit()
        if point == "sweep_after_commit":
            die()
        outbox.relay(sessions, publish_then_die)  # sweep_in_relay
        sys.exit(3)

    with sessions() as session:
        project = services.get_or_create_project(session, name="crash")
        with open(path, "rb") as f:
            added = services.add_document(
                session, project=project, storage=storage, file_name=name, pieces=[f.read()]
            )
        # What the API's dispatcher does: the job joins the upload's transaction.
        if added.created:
            outbox.put_jobs(session, [(added.document.id, added.document.generation)])
        if point == "before_commit":
            die()
        session.commit()
    if point == "after_commit":
        die()
    outbox.relay(sessions, publish_then_die)  # after_publish
    sys.exit(3)  # never reached: every point dies
    """
)


def _drive(env: dict[str, str], tmp: Path, point: str, name: str = "", path: str = "") -> None:
    script = tmp / "driver.py"
    script.write_text(DRIVER, "utf-8")
    run = subprocess.run(
        [sys.executable, str(script), point, name, path],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == -9, (point, run.returncode, run.stderr[-3000:])


def test_a_crash_at_any_step_of_the_enqueue_path_loses_nothing(
    cluster: dict[str, str], tmp_path: Path, corpus: Path
) -> None:
    env = cluster  # on Redis and on RabbitMQ (tests/ops/conftest.py)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    engine = make_engine(settings.sqlalchemy_url)
    sessions = make_session_factory(engine)
    docs = war_and_peace_docs(corpus, 8)
    files = []
    for name, data in docs:
        path = tmp_path / name
        path.write_bytes(data)
        files.append((name, str(path)))

    upload_points = ["before_commit", "after_commit", "after_publish"]
    for point, (name, path) in zip(upload_points, files, strict=False):
        _drive(env, tmp_path, point, name, path)
    # The upload that died before its commit left nothing; the client uploads again, and this
    # time the process dies after its commit.
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Document)) == 2
    _drive(env, tmp_path, "after_commit", files[0][0], files[0][1])

    # Stuck documents for the sweep: recorded `processing` long ago, as a worker that died after
    # acknowledging leaves them.
    for name, path in files[3:]:
        _drive(env, tmp_path, "after_commit", name, path)
    stuck = [n for n, _ in files[3:]]
    with sessions() as session:
        stuck_ids = select(Document.id).where(Document.file_name.in_(stuck))
        session.execute(delete(OutboxEntry).where(OutboxEntry.document_id.in_(stuck_ids)))
        session.execute(
            update(Document)
            .where(Document.file_name.in_(stuck))
            .values(
                status=DocumentStatus.processing,
                queued_at=None,
                updated_at=utcnow() - timedelta(seconds=settings.stuck_after_s + 60),
            )
        )
        session.commit()
    _drive(env, tmp_path, "sweep_after_commit")
    with sessions() as session:
        pending = session.scalar(
            select(func.count()).where(Document.status == DocumentStatus.pending)
        )
        # All of them: the two uploads never published, the one published, and the stuck ones
        # the sweep re-queued (its verdict was committed before it died).
        assert pending == len(files)

    # A second round of stuck documents for a sweep that dies inside its relay.
    _drive(env, tmp_path, "sweep_in_relay")

    worker = start_worker(env, tmp_path, "crash-worker")
    queue = JobQueue(settings)
    try:
        # What `docvec beat` does every DOCVEC_SWEEP_INTERVAL_S: the sweep relays the outbox
        # (rows a dead relay had leased come back after app.outbox.LEASE_S).
        last_sweep = [0.0]

        def sweep_now_and_then() -> None:
            if time.monotonic() - last_sweep[0] > 10:
                queue._celery.send_task(SWEEP, queue=settings.queue)
                last_sweep[0] = time.monotonic()

        def all_done() -> bool:
            with sessions() as session:
                statuses = session.scalars(select(Document.status)).all()
            return len(statuses) == len(files) and all(
                s == DocumentStatus.vectorized for s in statuses
            )

        wait_until(all_done, 240, "every document vectorized", on_tick=sweep_now_and_then)
        with sessions() as session:
            per_doc = dict(
                session.execute(
                    select(VectorizationAttempt.document_id, func.count())
                    .where(VectorizationAttempt.outcome == AttemptOutcome.succeeded)
                    .group_by(VectorizationAttempt.document_id)
                ).all()
            )
            ids = set(session.scalars(select(Document.id)))
            assert session.scalar(select(func.count()).select_from(OutboxEntry)) == 0
        assert set(per_doc) == ids and set(per_doc.values()) == {1}, per_doc
    finally:
        queue.close()
        worker.stop()
        engine.dispose()
