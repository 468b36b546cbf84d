"""The FastAPI application factory."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from app import outbox
from app.api import access_log, docs
from app.api.auth import authorize
from app.api.deps import Dispatcher
from app.api.limits import BodySizeLimit
from app.api.routes import (
    answers,
    documents,
    health,
    index_versions,
    metrics,
    projects,
    status,
)
from app.config import Settings, get_settings
from app.db import migrate
from app.errors import DuplicateContent, IndexMismatch
from app.jobqueue import JobQueue
from app.runtime import Runtime
from app.services import Enqueue, NotFound


def create_app(
    settings: Settings | None = None,
    *,
    runtime: Runtime | None = None,
    enqueue: Enqueue | None = None,
    broker_ping: Callable[[], dict[str, Any]] | None = None,
    enqueue_build: Callable[[uuid.UUID], None] | None = None,
) -> FastAPI:
    """Build the API. By default it publishes jobs to Celery on ``settings.broker_url``.

    Jobs go through the outbox (app/outbox.py): recorded in the request's transaction, published
    right after it commits and, if the broker was down, by a relay thread every
    ``outbox_relay_interval_s``. Tests may inject a runtime and an enqueuer (e.g. an in-process
    runner) as the publisher; then there is no broker and no queue depth. ``enqueue_build``
    publishes one step of an index version's build (default: to the workers; tests run it here).
    """
    settings = settings or get_settings()
    # Credentials sent in a URL by mistake never reach the access log, whatever server runs us.
    access_log.install()
    queue: JobQueue | None = None
    publish: Enqueue | outbox.Publisher | None = enqueue
    if enqueue is None:
        queue = JobQueue(settings)
        # Messages of several documents (settings.job_batch): workers share provider requests.
        publish, broker_ping = queue.publisher(), queue.ping
        if enqueue_build is None:
            enqueue_build = queue.enqueue_build

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.auto_migrate:
            migrate.upgrade(settings.sqlalchemy_url)
        app.state.runtime = runtime or Runtime(settings)
        assert publish is not None
        relay_thread = outbox.RelayThread(
            app.state.runtime.sessions, publish, interval_s=settings.outbox_relay_interval_s
        )
        app.state.dispatcher = Dispatcher(app.state.runtime, publish, relay_thread)
        app.state.broker_ping = broker_ping
        app.state.enqueue_build = enqueue_build
        app.state.queue = queue
        relay_thread.start()
        try:
            yield
        finally:
            relay_thread.stop()
            if runtime is None:
                app.state.runtime.close()
            if queue is not None:
                queue.close()

    app = FastAPI(
        title="docvec",
        version="0.1.0",
        description="Documents in, searchable vectors out.",
        lifespan=lifespan,
        # Served by app/api/docs.py from local files: FastAPI's own pages load them from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    docs.install(app)
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(IndexMismatch, _conflict)
    app.add_exception_handler(DuplicateContent, _duplicate)
    app.add_exception_handler(RequestValidationError, _invalid)
    # Bodies are counted as they stream in: an oversized upload is cut off before it is spooled.
    app.add_middleware(BodySizeLimit, upload_limit=settings.upload_request_limit)
    app.include_router(health.router)
    # An API key on every route but the health checks, once any key exists (app/api/auth.py).
    app.include_router(projects.router, dependencies=[Depends(authorize)])
    app.include_router(answers.router, dependencies=[Depends(authorize)])
    app.include_router(documents.router, dependencies=[Depends(authorize)])
    app.include_router(index_versions.router, dependencies=[Depends(authorize)])
    app.include_router(status.router, dependencies=[Depends(authorize)])
    app.include_router(metrics.router, dependencies=[Depends(authorize)])
    if settings.ui_enabled:
        # The web console (/ui): its own sign-in (a cookie), the same keys and scopes.
        from app.api import ui

        ui.install(app, settings)
    return app


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 body, made safe to encode, never answered with a 500.

    FastAPI echoes the offending ``input``; a value JSON cannot carry (a non-finite float, a
    string with a lone surrogate, nesting deeper than the encoder's recursion limit) would make the
    response itself fail. Then the errors are written with :func:`json_safe` instead.
    """
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    try:
        content: Any = jsonable_encoder(errors)
        json.dumps(content, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeEncodeError, RecursionError):
        content = json_safe(errors)
    return JSONResponse({"detail": content}, status_code=422)


#: Depth past which :func:`json_safe` cuts a value short (no error body needs more).
_SAFE_DEPTH = 32
#: Larger integers are not echoed (``int`` refuses to print more than 4,300 digits).
_SAFE_INT_BITS = 1024


def json_safe(value: Any, depth: int = 0) -> Any:
    """``value`` with whatever strict JSON cannot encode written as text.

    A non-finite float becomes ``"nan"``, ``"inf"`` or ``"-inf"``; a lone surrogate its escape
    (``"\\ud800"``), in keys too; tuples become lists; anything nested deeper than 32 levels
    becomes ``"..."``; an integer of more than 1,024 bits, and any other object, its description.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if value.bit_length() <= _SAFE_INT_BITS else f"<{value.bit_length()}-bit int>"
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict | list | tuple) and depth >= _SAFE_DEPTH:
        return "..."
    if isinstance(value, dict):
        return {json_safe(str(k)): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v, depth + 1) for v in value]
    return json_safe(str(value))


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    """A missing project or document (:class:`~app.services.NotFound`) answers 404.

    The body is the one ``HTTPException(404, str(exc))`` gives, so routes simply let it rise.
    """
    return JSONResponse({"detail": str(exc)}, status_code=404)


async def _duplicate(request: Request, exc: Exception) -> JSONResponse:
    """A new version of a document with another document's bytes
    (:class:`~app.errors.DuplicateContent`) answers 409 naming that document."""
    assert isinstance(exc, DuplicateContent)
    return JSONResponse({"detail": str(exc), "document_id": exc.document_id}, status_code=409)


async def _conflict(request: Request, exc: Exception) -> JSONResponse:
    """Settings that describe another index than the project's active version
    (:class:`~app.errors.IndexMismatch`) answer 409 with the reason and the remedy."""
    return JSONResponse({"detail": str(exc)}, status_code=409)
