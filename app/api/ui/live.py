"""A project's documents as the console shows them, and their changes as Server-Sent Events.

:func:`project_state` reads one page of a project's documents (status, pages, chunks, OCR,
attempts, last error) and the project's progress (done / total) in one short session.
:func:`state_events` streams it: an ``event: state`` whenever something changed, a ``: keep-alive``
comment otherwise, for at most :data:`STREAM_S` seconds, after which the browser's
``EventSource`` reconnects by itself (the ``retry:`` field) — so no stream outlives a server's
graceful shutdown for long, and no connection or read transaction is held while it waits.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from app.db.models import Document, DocumentChunk, DocumentStatus, VectorizationAttempt

__all__ = [
    "DOCUMENTS_PER_PAGE",
    "POLL_S",
    "STREAM_S",
    "DocumentRow",
    "Progress",
    "ProjectState",
    "project_state",
    "state_events",
]

#: Documents per page of the project page's table.
DOCUMENTS_PER_PAGE = 100
#: Seconds between two reads of the documents' states while a stream is open (the browser's
#: fallback polls every 3 s, console.js).
POLL_S = 1.0
#: Seconds one event stream stays open before the browser reconnects.
STREAM_S = 300.0
#: Seconds of silence after which a ``: keep-alive`` comment is sent (proxies drop idle streams
#: after 30-60 s; nginx's default ``proxy_read_timeout`` is 60 s).
KEEP_ALIVE_S = 15.0
#: Milliseconds the browser waits before reconnecting (the SSE ``retry:`` field).
RETRY_MS = 2000


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a project is: documents by status; ``done`` = vectorized + failed."""

    total: int
    vectorized: int
    failed: int
    pending: int
    processing: int

    @property
    def done(self) -> int:
        return self.vectorized + self.failed

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.total) if self.total else 100


@dataclass(frozen=True, slots=True)
class DocumentRow:
    """One line of the documents table.

    ``ocr``: chunks whose text came from OCR.
    ``attempts``: runs recorded so far (every generation). ``error``: the last failure's reason
    (``failed_stage``: the stage it happened in).
    """

    id: uuid.UUID
    file_name: str
    status: str
    page_count: int | None
    chunk_count: int
    ocr: int
    attempts: int
    error: str | None
    failed_stage: str | None
    generation: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ProjectState:
    """What the project page shows: one page of rows and the whole project's progress."""

    progress: Progress
    rows: list[DocumentRow]
    offset: int

    def fingerprint(self) -> str:
        """Changes whenever anything shown changes."""
        payload = json.dumps(
            [asdict(self.progress), [asdict(r) for r in self.rows]], default=str, sort_keys=True
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def project_state(session: Session, *, project_id: uuid.UUID, offset: int = 0) -> ProjectState:
    """The project's progress and its documents ``offset`` to ``offset + DOCUMENTS_PER_PAGE``,
    oldest first (the API's order)."""
    counts: dict[str, int] = {
        status: n
        for status, n in session.execute(
            select(Document.status, func.count())
            .where(Document.project_id == project_id)
            .group_by(Document.status)
        ).all()
    }
    progress = Progress(
        total=sum(counts.values()),
        vectorized=counts.get(DocumentStatus.vectorized, 0),
        failed=counts.get(DocumentStatus.failed, 0),
        pending=counts.get(DocumentStatus.pending, 0),
        processing=counts.get(DocumentStatus.processing, 0),
    )
    docs = session.scalars(
        select(Document)
        .where(Document.project_id == project_id)
        .order_by(Document.created_at, Document.id)
        .limit(DOCUMENTS_PER_PAGE)
        .offset(offset)
    ).all()
    ids = [d.id for d in docs]
    attempts: dict[uuid.UUID, int] = dict(
        session.execute(
            select(VectorizationAttempt.document_id, func.count())
            .where(VectorizationAttempt.document_id.in_(ids))
            .group_by(VectorizationAttempt.document_id)
        ).all()
    )
    ocr: dict[uuid.UUID, int] = dict(
        session.execute(
            select(DocumentChunk.document_id, func.count())
            .where(DocumentChunk.document_id.in_(ids), DocumentChunk.ocr.is_(True))
            .group_by(DocumentChunk.document_id)
        ).all()
    )
    rows = [
        DocumentRow(
            id=d.id,
            file_name=d.file_name,
            status=d.status,
            page_count=d.page_count,
            chunk_count=d.chunk_count,
            ocr=ocr.get(d.id, 0),
            attempts=attempts.get(d.id, 0),
            error=d.error,
            failed_stage=d.failed_stage,
            generation=d.generation,
            updated_at=d.updated_at,
        )
        for d in docs
    ]
    return ProjectState(progress=progress, rows=rows, offset=offset)


def _event(name: str, data: dict[str, Any]) -> str:
    # json.dumps escapes newlines: the data is one line, as an SSE data field must be.
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def state_events(
    sessions: sessionmaker[Session],
    *,
    project_id: uuid.UUID,
    offset: int,
    render: Callable[[ProjectState], dict[str, Any]],
    stream_s: float = STREAM_S,
    poll_s: float = POLL_S,
) -> AsyncIterator[str]:
    """The project's state as Server-Sent Events: ``event: state`` (``render(state)`` as JSON)
    at once and on every change, ``event: gone`` if the project is deleted, keep-alive comments
    in between; ends after ``stream_s`` seconds. Each read takes its own short session, in a
    worker thread, so that the event loop never waits on the database."""

    def read() -> ProjectState | None:
        from app.db.models import Project

        with sessions() as session:
            if session.get(Project, project_id) is None:
                return None
            return project_state(session, project_id=project_id, offset=offset)

    yield f"retry: {RETRY_MS}\n\n"
    deadline = time.monotonic() + stream_s
    last, quiet_since = "", time.monotonic()
    while time.monotonic() < deadline:
        state = await run_in_threadpool(read)
        if state is None:
            yield _event("gone", {"message": "the project was deleted"})
            return
        fingerprint = state.fingerprint()
        if fingerprint != last:
            last, quiet_since = fingerprint, time.monotonic()
            yield _event("state", {"fingerprint": fingerprint, **render(state)})
        elif time.monotonic() - quiet_since >= KEEP_ALIVE_S:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        await asyncio.sleep(poll_s)
