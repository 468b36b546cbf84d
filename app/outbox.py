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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
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
    at = now or utcnow()
    session.add(
        OutboxEntry(
            document_id=document.id, generation=document.generation, created_at=at, available_at=at
        )
    )
    document.queued_at = at


def is_queued(document: Document) -> bool:
    """Whether a job for the document's current generation is on its way (outbox or broker)."""
    return document.status == "pending" and document.queued_at is not None


def waiting(session: Session) -> int:
    """Outbox rows not yet accepted by the broker."""
    return int(session.scalar(select(func.count()).select_from(OutboxEntry)) or 0)


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


def relay(
    sessions: sessionmaker[Session], publish: Publish, *, limit: int = RELAY_BATCH
) -> RelayReport:
    """Publish due outbox rows, oldest first, and delete each one the broker accepted.

    Rows are locked with ``FOR UPDATE SKIP LOCKED`` (PostgreSQL), so relays in several processes
    share the work instead of publishing the same row twice. The first failed publish stops the
    pass (the broker is down): that row and the rest of the pass back off (1, 2, 4 … 60 s) and
    keep their error in ``last_error``. Never raises for a broker failure; a database failure
    raises (the rows stay and the next pass retries).
    """
    now = utcnow()
    published = failed = 0
    error: str | None = None
    with session_scope(sessions) as session:
        rows = session.scalars(
            select(OutboxEntry)
            .where(OutboxEntry.available_at <= now)
            .order_by(OutboxEntry.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        for row in rows:
            if error is None:
                try:
                    publish(row.document_id, row.generation)
                except Exception as exc:  # whatever the broker client raises: keep the row
                    error = f"{type(exc).__name__}: {exc}"[:500]
                else:
                    session.delete(row)
                    published += 1
                    continue
            row.tries += 1
            row.last_error = error
            row.available_at = now + timedelta(seconds=_backoff_s(row.tries))
            failed += 1
    if error is not None:
        log.warning("outbox: %d job(s) wait for the broker: %s", failed, error)
    return RelayReport(published=published, failed=failed, error=error)


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
