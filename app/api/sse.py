"""A streamed answer as Server-Sent Events (WHATWG HTML, "Server-sent events").

The events, in this order (the contract a web console reads)::

    event: sources     data: [{n, chunk_id, document_id, file_name, page, chunk_index,
                              start_char, end_char, score, text}, ...]
    event: delta       data: {"text": "..."}                    (many)
    event: citation    data: {n, chunk_id, ...}                 (a source's first citation)
    event: done        data: the whole answer, as a non-streamed request returns it
 or event: error       data: {"error": "...", "error_class": "...", "retry_after_s": s | null}

and ``: keep-alive`` comment lines whenever nothing was sent for ``keepalive_s`` (a model that
thinks before its first word, a proxy that closes quiet connections). The stream always ends with
``done`` or ``error``: a provider that fails or stops midway is an ``error`` event, never a hang
(its silence is bounded by the chat request timeout).

The answer is produced in a thread of its own (the providers' SDKs block), and handed to the
event loop through a queue; when the client goes away the thread is told to stop and closes the
provider's stream at its next piece.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from app.answers import AnswerEvent, CitationEvent, DeltaEvent, DoneEvent, SourcesEvent
from app.errors import DocvecError
from app.services import NotFound

log = logging.getLogger(__name__)

#: Media type of the stream.
MEDIA_TYPE = "text/event-stream"
#: Headers of the stream: never cached, never buffered by a proxy (nginx's
#: ``X-Accel-Buffering``), so each event reaches the reader when it is sent.
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
KEEPALIVE = ": keep-alive\n\n"


def format_event(event: str, data: Any) -> str:
    """One event: ``event: <name>`` and ``data: <JSON on one line>``, then a blank line."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, allow_nan=False)}\n\n"


def render(event: AnswerEvent) -> str:
    """An answer event as its SSE text."""
    if isinstance(event, SourcesEvent):
        return format_event("sources", [s.as_dict() for s in event.sources])
    if isinstance(event, DeltaEvent):
        return format_event("delta", {"text": event.text})
    if isinstance(event, CitationEvent):
        return format_event("citation", event.source.as_dict())
    assert isinstance(event, DoneEvent)
    return format_event("done", event.answer.as_dict())


def error_event(exc: BaseException) -> str:
    """The ``error`` event of a failure. Messages of docvec's own errors are safe to show
    (redacted); any other exception is logged and named only by its class."""
    if isinstance(exc, DocvecError | NotFound | ValueError):
        message = str(exc)
    else:
        log.error("answer stream failed", exc_info=exc)
        message = "the answer failed on the server; see its log"
    return format_event(
        "error",
        {
            "error": message,
            "error_class": type(exc).__name__,
            "retry_after_s": getattr(exc, "retry_after_s", None),
        },
    )


async def answer_stream(
    events: Callable[[], Iterator[AnswerEvent]], *, keepalive_s: float
) -> AsyncIterator[str]:
    """The SSE text of ``events()``, run in a thread, with keep-alive comments.

    Args:
        events: makes the answer's event iterator (called in the thread).
        keepalive_s: seconds of silence before a ``: keep-alive`` comment.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    stop = threading.Event()

    def put(kind: str, item: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, item))
        except RuntimeError:  # the loop is gone: nobody is listening any more
            stop.set()

    def work() -> None:
        try:
            iterator = events()
            try:
                for event in iterator:
                    if stop.is_set():
                        break
                    put("event", event)
            finally:
                close = getattr(iterator, "close", None)
                if callable(close):
                    close()  # closes the provider's stream when the reader left early
        except BaseException as exc:
            put("error", exc)
        else:
            put("end", None)

    thread = threading.Thread(target=work, name="answer-stream", daemon=True)
    thread.start()
    try:
        while True:
            try:
                kind, item = await asyncio.wait_for(queue.get(), keepalive_s)
            except TimeoutError:
                yield KEEPALIVE
                continue
            if kind == "event":
                yield render(item)
            elif kind == "error":
                yield error_event(item)
                return
            else:
                return
    finally:
        stop.set()
