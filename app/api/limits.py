"""Request body limits, enforced while the body streams in.

Starlette parses a multipart upload completely — spooling every file to a temporary file — before
the route runs, so a limit checked in the route comes after a 5 GB body has already filled the
disk. :class:`BodySizeLimit` is a pure ASGI middleware in front of everything: it answers ``413``
at once when ``Content-Length`` announces too much, and otherwise counts the body as the
application reads it and cuts it off with ``413`` at the first byte over the limit. The rest of the
body is never read, and the connection is closed.

Limits: the upload routes (``POST /projects/{id}/documents``, and ``PUT /documents/{id}/file``, a
document's new version) take up to ``Settings.upload_request_limit`` bytes
(``max_request_bytes``, by default ``max_upload_bytes`` + 1 MiB); every other route up to
:data:`MAX_JSON_BODY_BYTES`.
"""

from __future__ import annotations

import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["MAX_JSON_BODY_BYTES", "BodySizeLimit"]

#: Largest body of a route other than the upload, bytes. The largest legitimate one, a project
#: description of 10,000 characters, is at most 60 kB even with every character JSON-escaped.
MAX_JSON_BODY_BYTES = 1024 * 1024

_UPLOAD_PATH = re.compile(r"/projects/[^/]+/documents/?$")
#: A document's new version (app/api/routes/documents.py, ``replace_document_file``).
_NEW_VERSION_PATH = re.compile(r"/documents/[^/]+/file/?$")


class _BodyTooLarge(Exception):
    """Raised from ``receive`` when the body passes the limit."""


class BodySizeLimit:
    """ASGI middleware that refuses request bodies over a limit with ``413``, while streaming.

    Args:
        app: the wrapped application.
        upload_limit: bytes allowed for ``POST .../projects/{id}/documents`` and
            ``PUT .../documents/{id}/file``.
        default_limit: bytes allowed for any other request.
    """

    def __init__(
        self, app: ASGIApp, *, upload_limit: int, default_limit: int = MAX_JSON_BODY_BYTES
    ) -> None:
        self.app = app
        self.upload_limit = upload_limit
        self.default_limit = default_limit

    def limit_for(self, scope: Scope) -> int:
        """The body limit (bytes) of the request ``scope`` describes."""
        method, path = scope.get("method"), scope.get("path", "")
        if (method == "POST" and _UPLOAD_PATH.search(path)) or (
            method == "PUT" and _NEW_VERSION_PATH.search(path)
        ):
            return self.upload_limit
        return self.default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _send_413(send, limit)
            return

        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                # The application turned the cut-off into a response of its own (FastAPI answers
                # 400 "error parsing the body"): ours replaces it.
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await _send_413(send, limit)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _BodyTooLarge:
            if not started:
                await _send_413(send, limit)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_413(send: Send, limit: int) -> None:
    body = json.dumps(
        {"detail": f"the request body is larger than the limit of {limit:,} bytes"}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The rest of the body is never read: the connection cannot be reused.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
