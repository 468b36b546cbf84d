"""Calls from the console to the app's own HTTP API, in the process, streamed.

Pages built on routes that other parts of docvec own — answers (``POST /projects/{id}/answer``)
and index versions (``/projects/{id}/index-versions``) — drive them through their HTTP contract,
not their internals: :func:`api_client` gives an ``httpx.AsyncClient`` whose transport hands each
request straight to the ASGI app (no socket, no second server) with the visitor's key in the
``Authorization`` header, so the API's own authentication, scoping, validation and limits apply
unchanged. Unlike ``httpx.ASGITransport``, which collects the whole body first, responses stream:
an answer's Server-Sent Events reach the browser as the model writes them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import Request
from starlette.types import ASGIApp, Message
from typing_extensions import override

__all__ = ["AppTransport", "api_client", "has_route"]

#: Host name of in-process requests (never resolved: nothing leaves the process).
_BASE_URL = "http://docvec.internal"


class _Body(httpx.AsyncByteStream):
    """The response body as the app sends it; closing it tells the app the client has gone."""

    def __init__(
        self,
        queue: asyncio.Queue[bytes | None],
        gone: asyncio.Event,
        task: asyncio.Task[None],
    ) -> None:
        self._queue, self._gone, self._task = queue, gone, task

    @override
    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (piece := await self._queue.get()) is not None:
            yield piece
        # Re-raise what ended the app, if anything did.
        await self._task

    @override
    async def aclose(self) -> None:
        self._gone.set()
        if not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


class AppTransport(httpx.AsyncBaseTransport):
    """An httpx transport that runs each request through ``app`` in this event loop.

    Args:
        app: the ASGI application (the FastAPI app itself: its middleware runs, e.g. the body
            size limits).
        client: the (host, port) the app sees as the caller: the browser's, so logs stay true.
    """

    def __init__(self, app: ASGIApp, client: tuple[str, int] | None = None) -> None:
        self._app, self._client = app, client

    @override
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": "http",
            "path": request.url.path,
            "raw_path": request.url.raw_path.split(b"?", 1)[0],
            "query_string": request.url.query,
            "root_path": "",
            "headers": [(k.lower(), v) for k, v in request.headers.raw],
            "client": self._client,
            "server": ("docvec.internal", 80),
            "state": {},
        }
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        gone = asyncio.Event()
        started: asyncio.Future[tuple[int, list[tuple[bytes, bytes]]]] = (
            asyncio.get_running_loop().create_future()
        )
        sent_body = False

        async def receive() -> Message:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.set_result((message["status"], list(message.get("headers", []))))
            elif message["type"] == "http.response.body":
                if piece := message.get("body", b""):
                    await queue.put(piece)
                if not message.get("more_body", False):
                    await queue.put(None)

        async def run() -> None:
            try:
                await self._app(scope, receive, send)
            except BaseException as exc:
                if not started.done():
                    started.set_exception(exc)
                await queue.put(None)
                raise

        task = asyncio.create_task(run())
        try:
            status_code, headers = await started
        except BaseException:
            gone.set()
            with contextlib.suppress(BaseException):
                await task
            raise
        return httpx.Response(
            status_code, headers=headers, stream=_Body(queue, gone, task), request=request
        )


def api_client(request: Request, key: str | None) -> httpx.AsyncClient:
    """A client of this app's API, as the visitor: ``key`` (None in the open mode) goes in the
    ``Authorization`` header of every request. Use it with ``async with``."""
    client = (request.client.host, request.client.port) if request.client else None
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(
        transport=AppTransport(request.app, client),
        base_url=_BASE_URL,
        headers=headers,
        timeout=None,
    )


def has_route(request: Request, path: str, method: str = "GET") -> bool:
    """True if the app's API has ``method path`` (a path template such as
    ``/projects/{project_id}/answer``): the console links only to features that are there.

    Read from the OpenAPI schema, which FastAPI builds once and caches: it lists every route
    of every included router.
    """
    operations = request.app.openapi().get("paths", {}).get(path, {})
    return method.lower() in operations
