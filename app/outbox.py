"""The transactional enqueue (an outbox, DESIGN §2 invariant 7): jobs are rows before messages.

Whether a document needs a job is decided in the SQL transaction that records the upload, the
re-vectorize request, the retry or the sweep's verdict: :func:`put` adds a ``job_outbox`` row in
that transaction. Publishing to the broker follows, by :func:`relay`, and may repeat:

* a crash before the commit leaves no document and no row (nothing was promised);
* a crash after the commit, before the publish, leaves the row: the next relay publishes it (the
  API relays after every request and every few seconds, the sweep on every run);
* a crash after the publish, before the row is deleted, publishes twice: the second run finds the
  document already vectorized for its generation (or superseded) and writes nothing.

The broker is reached only through the ``publish`` callback, so this module knows nothing of
Celery, Redis or RabbitMQ. pgai's vectorizer keeps its queue in the database for the same reason.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Document, OutboxEntry, utcnow
from app.db.session import session_scope

log = logging.getLogger(__name__)

#: ``publish(document_id, generation)``: hand one job to the broker; raises if it cannot.
Publish = Callable[[uuid.UUID, int], None]

#: Longest pause between two publish attempts of a row whose publish failed, seconds: a broker
#: that comes back is used within a minute even by a relay that only runs on the sweep.
MAX_BACKOFF_S = 60.0
#: Rows one relay pass publishes at most; a pass holds their row locks while it publishes.
RELAY_BATCH = 500


def put(session: Session, document: Document, *, now: datetime | None = None) -> None:
    """Record, in the caller's transaction, that ``document`` needs a job for its current
    generation; mark it queued (``queued_at``) so a second request before the claim coalesces."""
    _record(session, document, document.generation, now or utcnow())


def _record(session: Session, document: Document, generation: int, at: datetime) -> None:
    session.add(
        OutboxEntry(document_id=document.id, generation=generation, created_at=at, available_at=at)
    )
    document.queued_at = at


def put_jobs(
    session: Session, jobs: Iterable[tuple[uuid.UUID, int]], *, now: datetime | None = None
) -> int:
    """:func:`put` for ``(document_id, generation)`` pairs (the services' job lists); returns
    how many were recorded. Documents that no longer exist are skipped."""
    at = now or utcnow()
    count = 0
    for document_id, generation in jobs:
        document = session.get(Document, document_id)
        if document is None:
            continue
        _record(session, document, generation, at)
        count += 1
    return count


def is_queued(document: Document) -> bool:
    """Whether a job for the document's current generation is on its way (outbox or broker)."""
    return document.status == "pending" and document.queued_at is not None


@dataclass(frozen=True, slots=True)
class RelayReport:
    """One relay pass: rows published, rows whose publish failed (kept, backed off), the error."""

    published: int
    failed: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the broker took every row this pass tried."""
        return self.failed == 0


def _backoff_s(tries: int) -> float:
    return float(min(MAX_BACKOFF_S, 2 ** min(tries, 6)))


#: Seconds a relay pass leases the rows it took: another relay skips them meanwhile; a relay
#: that dies mid-pass leaves them to the next pass after this long.
LEASE_S = 30.0


def relay(
    sessions: sessionmaker[Session], publish: Publish, *, limit: int = RELAY_BATCH
) -> RelayReport:
    """Publish due outbox rows, oldest first, and delete each one the broker accepted.

    The pass first leases its rows (``available_at`` moved :data:`LEASE_S` ahead, in a short
    transaction with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so relays in several processes
    share the work instead of publishing one row twice, and no SQL transaction stays open while
    the broker is called (an in-process publisher may write SQL itself). Each accepted row is then
    deleted in its own short transaction. The first failed publish stops the pass (the broker is
    down): that row and the rest back off (1, 2, 4 … 60 s) and keep the error in ``last_error``.
    Never raises for a broker failure; a database failure raises (rows stay for the next pass).
    """
    now = utcnow()
    with session_scope(sessions) as session:
        rows = session.execute(
            select(
                OutboxEntry.id, OutboxEntry.document_id, OutboxEntry.generation, OutboxEntry.tries
            )
            .where(OutboxEntry.available_at <= now)
            .order_by(OutboxEntry.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        taken: list[tuple[uuid.UUID, uuid.UUID, int, int]] = []
        for row_id, document_id, generation, tries in rows:
            # Leased only if still due: SQLite has no FOR UPDATE, so two relays (two requests of
            # one API process) may select the same rows; the second finds them leased or gone.
            leased = session.execute(
                update(OutboxEntry)
                .where(OutboxEntry.id == row_id, OutboxEntry.available_at <= now)
                .values(available_at=now + timedelta(seconds=LEASE_S))
                .execution_options(synchronize_session=False)
            )
            if leased.rowcount:  # type: ignore[attr-defined]
                taken.append((row_id, document_id, generation, tries))
    published = failed = 0
    error: str | None = None
    for index, (row_id, document_id, generation, tries) in enumerate(taken):
        try:
            publish(document_id, generation)
        except Exception as exc:  # whatever the broker client raises: keep the rows
            error = f"{type(exc).__name__}: {exc}"[:500]
            failed = len(taken) - index
            _back_off(sessions, [t[0] for t in taken[index:]], tries, error)
            break
        with session_scope(sessions) as session:
            session.execute(delete(OutboxEntry).where(OutboxEntry.id == row_id))
        published += 1
    if error is not None:
        log.warning("outbox: %d job(s) wait for the broker: %s", failed, error)
    return RelayReport(published=published, failed=failed, error=error)


def _back_off(
    sessions: sessionmaker[Session], row_ids: list[uuid.UUID], tries: int, error: str
) -> None:
    at = utcnow() + timedelta(seconds=_backoff_s(tries + 1))
    with session_scope(sessions) as session:
        session.execute(
            update(OutboxEntry)
            .where(OutboxEntry.id.in_(row_ids))
            .values(tries=OutboxEntry.tries + 1, last_error=error, available_at=at)
        )


class RelayThread:
    """Runs :func:`relay` every ``interval_s`` seconds (and at once on :meth:`kick`) in a daemon
    thread: the API process's relay, which publishes what was accepted during a broker outage
    as soon as the broker is back."""

    def __init__(
        self, sessions: sessionmaker[Session], publish: Publish, *, interval_s: float
    ) -> None:
        self._sessions, self._publish, self._interval_s = sessions, publish, interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="docvec-outbox", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def kick(self) -> None:
        """Relay now rather than at the next interval."""
        self._wake.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                relay(self._sessions, self._publish)
            except Exception as exc:  # the database is down: try again next interval
                log.warning("outbox relay failed: %s", exc)
            self._wake.wait(self._interval_s)
            self._wake.clear()
