"""Relays running at once on SQLite (two requests of one API process, each relaying after its
commit) share the outbox: none fails, every job is published, none twice.

SQLite has no ``SELECT ... FOR UPDATE``: before the lease became conditional, two relays selected
the same rows, and the one that leased second hit rows the first had already published and
deleted (``StaleDataError``), which failed the request that had just recorded an upload.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from app import outbox
from app.config import Settings
from app.db import migrate
from app.db.models import Document, OutboxEntry, Project
from app.db.session import make_engine, make_session_factory

RELAYS = 6
JOBS = 60


def test_concurrent_relays_publish_each_job_once(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")  # type: ignore[call-arg]
    migrate.upgrade(settings.sqlalchemy_url)
    engine = make_engine(settings.sqlalchemy_url)
    sessions = make_session_factory(engine)
    with sessions() as s:
        project = Project(name="p")
        s.add(project)
        s.flush()
        docs = [
            Document(
                project_id=project.id,
                file_name=f"{i}.md",
                size_bytes=1,
                sha256=f"{i:064x}",
                storage_uri=f"file:{i}",
                generation=1,
            )
            for i in range(JOBS)
        ]
        s.add_all(docs)
        s.flush()
        outbox.put_jobs(s, [(d.id, 1) for d in docs])
        s.commit()

    published: Counter[uuid.UUID] = Counter()
    lock = threading.Lock()

    def publish(document_id: uuid.UUID, generation: int) -> None:
        time.sleep(0.002)  # a broker round trip: the relays overlap
        with lock:
            published[document_id] += 1

    start = threading.Barrier(RELAYS)
    errors: list[BaseException] = []

    def run() -> None:
        start.wait()
        try:
            outbox.relay(sessions, publish)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(RELAYS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(published.values()) == [1] * JOBS
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(OutboxEntry)) == 0
    engine.dispose()
