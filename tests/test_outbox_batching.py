"""The relay's messages of several documents (app/outbox.py, README "Batches across documents"):
grouped by count and file bytes, a partly filled message held for ``wait_s`` and then sent by the
relay thread, a broker failure keeping every row, and retries recorded through the outbox.

Real SQLite through the real Alembic migrations; the "broker" is a list the publisher appends to.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app import outbox
from app.config import Settings
from app.db import migrate
from app.db.models import Document, OutboxEntry, Project
from app.db.session import make_engine, make_session_factory

Jobs = Sequence[tuple[uuid.UUID, int]]


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")  # type: ignore[call-arg]
    migrate.upgrade(settings.sqlalchemy_url)
    engine = make_engine(settings.sqlalchemy_url)
    yield make_session_factory(engine)
    engine.dispose()


def _documents(sessions: sessionmaker[Session], sizes: list[int]) -> list[uuid.UUID]:
    """Documents of the given file sizes (bytes), each with its job in the outbox, in order."""
    with sessions() as s:
        project = Project(name=f"p-{uuid.uuid4().hex[:6]}")
        s.add(project)
        s.flush()
        ids = []
        for i, size in enumerate(sizes):
            doc = Document(
                project_id=project.id,
                file_name=f"{i}.txt",
                size_bytes=size,
                sha256=uuid.uuid4().hex * 2,
                storage_uri=f"file:{i}",
                generation=1,
            )
            s.add(doc)
            s.flush()
            outbox.put(s, doc)
            s.flush()
            ids.append(doc.id)
            time.sleep(0.001)  # distinct created_at: the relay keeps upload order
        s.commit()
    return ids


@dataclass
class Broker:
    messages: list[list[uuid.UUID]] = field(default_factory=list)
    countdowns: list[float | None] = field(default_factory=list)
    down: bool = False

    def publish(self, jobs: Jobs, countdown_s: float | None = None) -> None:
        if self.down:
            raise ConnectionError("broker down")
        self.messages.append([d for d, _ in jobs])
        self.countdowns.append(countdown_s)


def _outbox_rows(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.count()).select_from(OutboxEntry)) or 0)


def test_messages_are_cut_by_documents_and_bytes(sessions: sessionmaker[Session]) -> None:
    sizes = [10] * 5 + [5_000] + [10] * 3
    ids = _documents(sessions, sizes)
    broker = Broker()
    publisher = outbox.Publisher(broker.publish, max_documents=3, max_bytes=1_000)
    report = outbox.relay(sessions, publisher)
    # 3 + 2 (the large file cannot join them), the large file alone, then 3.
    assert broker.messages == [ids[0:3], ids[3:5], ids[5:6], ids[6:9]]
    assert (report.published, report.messages, report.held) == (9, 4, 0)
    assert _outbox_rows(sessions) == 0


def test_a_partly_filled_message_waits_then_goes(sessions: sessionmaker[Session]) -> None:
    ids = _documents(sessions, [10] * 5)
    broker = Broker()
    publisher = outbox.Publisher(broker.publish, max_documents=4, wait_s=1.0)
    report = outbox.relay(sessions, publisher)
    # The full message of 4 goes; the fifth waits for company.
    assert broker.messages == [ids[:4]]
    assert report.held == 1 and report.next_s is not None and 0 < report.next_s <= 1.0
    more = _documents(sessions, [10] * 2)
    # A relay thread comes back when the wait is over, and sends the 3 jobs due by then.
    thread = outbox.RelayThread(sessions, publisher, interval_s=60)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while len(broker.messages) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        thread.stop()
    assert broker.messages[1] == [ids[4], *more]
    assert _outbox_rows(sessions) == 0


def test_no_wait_sends_what_is_due(sessions: sessionmaker[Session]) -> None:
    ids = _documents(sessions, [10] * 3)
    broker = Broker()
    report = outbox.relay(sessions, outbox.Publisher(broker.publish, max_documents=8))
    assert broker.messages == [ids] and report.held == 0


def test_a_broker_failure_keeps_every_row(sessions: sessionmaker[Session]) -> None:
    ids = _documents(sessions, [10] * 5)
    broker = Broker(down=True)
    report = outbox.relay(sessions, outbox.Publisher(broker.publish, max_documents=2))
    assert (report.published, report.failed) == (0, 5) and "broker down" in (report.error or "")
    assert _outbox_rows(sessions) == 5
    with sessions() as s:
        rows = s.scalars(select(OutboxEntry)).all()
        assert {r.tries for r in rows} == {1} and all(r.last_error for r in rows)
        for r in rows:  # due again now rather than after the backoff
            r.available_at = r.created_at
        s.commit()
    broker.down = False
    outbox.relay(sessions, outbox.Publisher(broker.publish, max_documents=2))
    assert sorted(d for m in broker.messages for d in m) == sorted(ids)


def test_retry_later_records_rows_then_publishes_held_back(
    sessions: sessionmaker[Session],
) -> None:
    ids = _documents(sessions, [10] * 3)
    outbox.relay(sessions, outbox.Publisher(Broker().publish, max_documents=8))
    with sessions() as s:  # the second document moved on (a re-vectorize): no retry for it
        s.get(Document, ids[1]).generation = 2  # type: ignore[union-attr]
        s.commit()
    broker = Broker()
    queued = outbox.retry_later(
        sessions, [(d, 1) for d in ids], countdown_s=30, publish_later=broker.publish
    )
    assert queued == 2
    assert broker.messages == [[ids[0], ids[2]]] and broker.countdowns == [30]
    assert _outbox_rows(sessions) == 0  # published: the broker holds them
    with sessions() as s:
        queued_at = s.get(Document, ids[0]).queued_at  # type: ignore[union-attr]
        assert queued_at is not None  # the sweep sees it queued, not lost


def test_retry_later_with_the_broker_down_leaves_the_rows_for_a_relay(
    sessions: sessionmaker[Session],
) -> None:
    ids = _documents(sessions, [10] * 2)
    outbox.relay(sessions, outbox.Publisher(Broker().publish, max_documents=8))
    queued = outbox.retry_later(
        sessions, [(d, 1) for d in ids], countdown_s=0.2, publish_later=Broker(down=True).publish
    )
    assert queued == 2 and _outbox_rows(sessions) == 2
    broker = Broker()
    assert outbox.relay(sessions, outbox.Publisher(broker.publish, 8)).published == 0  # not due
    time.sleep(0.3)
    assert outbox.relay(sessions, outbox.Publisher(broker.publish, 8)).published == 2
    assert broker.messages == [ids]


def test_single_publish_callbacks_still_send_one_job_per_message(
    sessions: sessionmaker[Session],
) -> None:
    ids = _documents(sessions, [10] * 3)
    seen: list[uuid.UUID] = []
    lock = threading.Lock()

    def publish(document_id: uuid.UUID, generation: int) -> None:
        with lock:
            seen.append(document_id)

    report = outbox.relay(sessions, publish)
    assert seen == ids and report.messages == 3
