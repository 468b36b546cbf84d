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

Batches across documents (README, "Batches across documents"): with a :class:`Publisher` the relay
hands the broker *groups* of due rows — up to ``max_documents`` documents and ``max_bytes`` of their
files per message — so a worker fills provider requests with the chunks of many small documents.
A partly filled group waits up to ``wait_s`` after its oldest row fell due for more rows to arrive;
a full group, or one that waited that long, goes at once. Each document of a message is still run,
checked and committed on its own (app/pipeline/process.py).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Document, OutboxEntry, utcnow
from app.db.session import session_scope

log = logging.getLogger(__name__)

#: ``publish(document_id, generation)``: hand one job to the broker; raises if it cannot.
Publish = Callable[[uuid.UUID, int], None]
#: ``publish_batch([(document_id, generation), ...])``: hand one message of several jobs to the
#: broker (one worker task runs them together); raises if it cannot.
PublishBatch = Callable[[Sequence[tuple[uuid.UUID, int]]], None]


@dataclass(frozen=True, slots=True)
class Publisher:
    """How the relay groups due jobs into broker messages, and the callback that sends one.

    Attributes:
        publish_batch: sends one message of ``(document_id, generation)`` pairs.
        max_documents: documents per message at most (``DOCVEC_JOB_BATCH__MAX_DOCUMENTS``).
        max_bytes: file bytes per message at most, summed over its documents' uploads; a
            larger file still goes, alone (``DOCVEC_JOB_BATCH__MAX_BYTES``).
        wait_s: seconds a partly filled message may wait, after its oldest job fell due, for
            more jobs (``DOCVEC_JOB_BATCH__WAIT_S``); 0 sends what is due at once.
    """

    publish_batch: PublishBatch
    max_documents: int = 1
    max_bytes: int = 1 << 62
    wait_s: float = 0.0

    @classmethod
    def single(cls, publish: Publish) -> Publisher:
        """One job per message, sent at once: the relay of a ``publish(document_id, generation)``
        callback (tests' in-process runners, messages for older workers)."""

        def one(jobs: Sequence[tuple[uuid.UUID, int]]) -> None:
            for document_id, generation in jobs:
                publish(document_id, generation)

        return cls(one)

    def flushing(self) -> Publisher:
        """The same grouping with no wait: what a process that relays once and exits uses."""
        return Publisher(self.publish_batch, self.max_documents, self.max_bytes, 0.0)


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
    """One relay pass: rows published, rows whose publish failed (kept, backed off), the error,
    and the rows held back to fill a message (due in ``wait_s`` seconds at most: ``next_s``)."""

    published: int
    failed: int
    error: str | None = None
    #: Due rows not sent yet: a partly filled message still waiting for more jobs.
    held: int = 0
    #: Seconds until the held rows go out even if no more jobs arrive (None: none held).
    next_s: float | None = None
    #: Broker messages sent this pass.
    messages: int = 0

    @property
    def ok(self) -> bool:
        """True when the broker took every row this pass tried."""
        return self.failed == 0


def _backoff_s(tries: int) -> float:
    return float(min(MAX_BACKOFF_S, 2 ** min(tries, 6)))


#: Seconds a relay pass leases the rows it took: another relay skips them meanwhile; a relay
#: that dies mid-pass leaves them to the next pass after this long.
LEASE_S = 30.0


@dataclass(frozen=True, slots=True)
class _Row:
    id: uuid.UUID
    document_id: uuid.UUID
    generation: int
    tries: int
    size_bytes: int
    available_at: datetime


def _groups(rows: Sequence[_Row], publisher: Publisher) -> list[list[_Row]]:
    """Consecutive rows cut into messages of at most ``max_documents`` rows and ``max_bytes`` of
    files (a row larger than ``max_bytes`` makes a message of its own)."""
    groups: list[list[_Row]] = []
    current: list[_Row] = []
    size = 0
    for row in rows:
        if current and (
            len(current) >= publisher.max_documents or size + row.size_bytes > publisher.max_bytes
        ):
            groups.append(current)
            current, size = [], 0
        current.append(row)
        size += row.size_bytes
    if current:
        groups.append(current)
    return groups


def _is_full(group: Sequence[_Row], publisher: Publisher) -> bool:
    return len(group) >= publisher.max_documents or (
        sum(r.size_bytes for r in group) >= publisher.max_bytes
    )


def _aware(at: datetime) -> datetime:
    # SQLite returns naive datetimes for timezone-aware columns; they are UTC (utcnow()).
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def relay(
    sessions: sessionmaker[Session],
    publish: Publish | Publisher,
    *,
    limit: int = RELAY_BATCH,
) -> RelayReport:
    """Publish due outbox rows, oldest first, and delete each one the broker accepted.

    ``publish`` is either a one-job callback (each row its own message, at once) or a
    :class:`Publisher`, which groups rows into messages of several documents and may hold a
    partly filled last message back for up to its ``wait_s`` (the report's ``held`` and
    ``next_s`` say so; :class:`RelayThread` comes back for it in time).

    The pass first leases its rows (``available_at`` moved :data:`LEASE_S` ahead, in a short
    transaction with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so relays in several processes
    share the work instead of publishing one row twice, and no SQL transaction stays open while
    the broker is called (an in-process publisher may write SQL itself). The rows of each
    accepted message are then deleted in one short transaction. The first failed publish stops
    the pass (the broker is down): that message's rows and the rest back off (1, 2, 4 … 60 s)
    and keep the error in ``last_error``.
    Never raises for a broker failure; a database failure raises (rows stay for the next pass).
    """
    publisher = publish if isinstance(publish, Publisher) else Publisher.single(publish)
    now = utcnow()
    held = 0
    next_s: float | None = None
    with session_scope(sessions) as session:
        due = [
            _Row(*r)
            for r in session.execute(
                select(
                    OutboxEntry.id,
                    OutboxEntry.document_id,
                    OutboxEntry.generation,
                    OutboxEntry.tries,
                    Document.size_bytes,
                    OutboxEntry.available_at,
                )
                .join(Document, Document.id == OutboxEntry.document_id)
                .where(OutboxEntry.available_at <= now)
                .order_by(OutboxEntry.created_at)
                .limit(limit)
                .with_for_update(skip_locked=True, of=OutboxEntry)
            ).all()
        ]
        groups = _groups(due, publisher)
        if (
            groups
            and publisher.wait_s > 0
            and len(due) < limit  # more rows may be due beyond the limit: nothing to wait for
            and not _is_full(groups[-1], publisher)
        ):
            # The last message is partly filled: it waits for more jobs until its oldest row
            # has been due for wait_s.
            oldest = min(_aware(r.available_at) for r in groups[-1])
            left = publisher.wait_s - (now - oldest).total_seconds()
            if left > 0:
                held, next_s = len(groups[-1]), left
                groups.pop()
        taken: list[list[_Row]] = []
        for group in groups:
            leased: list[_Row] = []
            for row in group:
                # Leased only if still due: SQLite has no FOR UPDATE, so two relays (two
                # requests of one API process) may select the same rows; the second finds them
                # leased or gone.
                result = session.execute(
                    update(OutboxEntry)
                    .where(OutboxEntry.id == row.id, OutboxEntry.available_at <= now)
                    .values(available_at=now + timedelta(seconds=LEASE_S))
                    .execution_options(synchronize_session=False)
                )
                if result.rowcount:  # type: ignore[attr-defined]
                    leased.append(row)
            if leased:
                taken.append(leased)
    published = failed = messages = 0
    error: str | None = None
    for index, group in enumerate(taken):
        try:
            publisher.publish_batch([(r.document_id, r.generation) for r in group])
        except Exception as exc:  # whatever the broker client raises: keep the rows
            error = f"{type(exc).__name__}: {exc}"[:500]
            rest = [r for g in taken[index:] for r in g]
            failed = len(rest)
            _back_off(sessions, [r.id for r in rest], max(r.tries for r in rest), error)
            break
        with session_scope(sessions) as session:
            session.execute(delete(OutboxEntry).where(OutboxEntry.id.in_([r.id for r in group])))
        published += len(group)
        messages += 1
    if error is not None:
        log.warning("outbox: %d job(s) wait for the broker: %s", failed, error)
    return RelayReport(
        published=published,
        failed=failed,
        error=error,
        held=held,
        next_s=next_s,
        messages=messages,
    )


#: ``publish_later(jobs, countdown_s)``: one message the broker holds back ``countdown_s`` seconds.
PublishLater = Callable[[Sequence[tuple[uuid.UUID, int]], float], None]


def retry_later(
    sessions: sessionmaker[Session],
    jobs: Sequence[tuple[uuid.UUID, int]],
    *,
    countdown_s: float,
    publish_later: PublishLater,
) -> int:
    """Queue a retry of ``jobs`` in ``countdown_s`` seconds, through the outbox.

    In one transaction each job whose document is still ``pending`` at that generation gets an
    outbox row not due before then, and the document is marked queued until then (so the sweep
    does not take it for lost); after the commit the jobs go to the broker as one message it
    holds back ``countdown_s`` (so the retry does not wait for a relay pass), and the rows are
    deleted. If that publish fails the rows stay, and the first relay pass after they fall due
    publishes them. Returns how many jobs were queued.

    Raises:
        sqlalchemy.exc.OperationalError: the database is unreachable (nothing was recorded).
    """
    now = utcnow()
    due = now + timedelta(seconds=countdown_s)
    rows: list[OutboxEntry] = []
    with session_scope(sessions) as session:
        for document_id, generation in jobs:
            document = session.get(Document, document_id, with_for_update=True)
            if document is None or document.generation != generation:
                continue
            if document.status != "pending":  # moved on meanwhile (deleted, re-run elsewhere)
                continue
            row = OutboxEntry(
                document_id=document_id, generation=generation, created_at=now, available_at=due
            )
            session.add(row)
            document.queued_at = due
            rows.append(row)
        session.flush()
        queued = [(r.id, r.document_id, r.generation) for r in rows]
    if not queued:
        return 0
    try:
        publish_later([(d, g) for _, d, g in queued], countdown_s)
    except Exception as exc:  # the rows stay: a relay publishes them once due
        log.warning("outbox: retry of %d job(s) left to the relay: %s", len(queued), exc)
        return len(queued)
    with session_scope(sessions) as session:
        session.execute(delete(OutboxEntry).where(OutboxEntry.id.in_([q[0] for q in queued])))
    return len(queued)


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
        self, sessions: sessionmaker[Session], publish: Publish | Publisher, *, interval_s: float
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
            wait_s = self._interval_s
            try:
                report = relay(self._sessions, self._publish)
                if report.next_s is not None:
                    # A partly filled message is waiting: come back when its wait is over.
                    wait_s = min(wait_s, report.next_s + 0.01)
            except Exception as exc:  # the database is down: try again next interval
                log.warning("outbox relay failed: %s", exc)
            self._wake.wait(wait_s)
            self._wake.clear()
