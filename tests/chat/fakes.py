"""Loopback HTTP servers that speak the chat providers' wire formats, for the real SDKs.

Built on the embedding fakes' plumbing (:class:`tests.embeddings.fakes.FakeServer`: a
``ThreadingHTTPServer`` on 127.0.0.1, the request log, the per-test script), with answers that
stream: HTTP/1.1 chunked bodies written piece by piece, flushed after each.

- :class:`FakeOpenAIChat`: ``POST /v1/chat/completions``; whole answers as ``chat.completion``,
  streamed ones as Server-Sent Events of ``chat.completion.chunk`` (the finishing chunk, the
  usage chunk of ``stream_options.include_usage``, then ``data: [DONE]``).
- :class:`FakeOllamaChat`: ``POST /api/chat``; NDJSON lines, the last with ``done: true``,
  ``done_reason`` and the token counts.
- :class:`FakeGeminiChat`: ``POST /v1beta/models/{model}:generateContent`` and
  ``:streamGenerateContent?alt=sse`` (SSE of ``GenerateContentResponse``, the last candidate with
  ``finishReason``).

A :class:`ChatReply` in the script says how to answer the next chat request: an error status and
body (the provider's own error JSON, with headers such as ``Retry-After``), the text pieces, a
delay before the first piece, a connection dropped after some pieces (``cut_after``), optionally
after a silence (``stall_s``), or a body that ends cleanly without the final event
(``unfinished``).
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.embeddings.fakes import FakeServer, Seen, tokens

#: What the fakes answer when the script says nothing: a cited sentence in three pieces.
DEFAULT_PIECES = ["The answer", " is in the documents", " [1]."]


@dataclass
class ChatReply:
    """One scripted answer to a chat request."""

    status: int = 200
    #: The error body (status != 200).
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    #: The answer's text pieces (one stream event each); None = :data:`DEFAULT_PIECES`.
    pieces: list[str] | None = None
    #: Seconds before the response starts, and between its headers and the first piece.
    delay_s: float = 0.0
    first_piece_delay_s: float = 0.0
    #: Drop the connection (no end of the chunked body) after this many events.
    cut_after: int | None = None
    #: Before dropping it, say nothing for this long.
    stall_s: float = 0.0
    #: End the body cleanly without the final event(s) (no finish reason).
    unfinished: bool = False


class FakeChatServer(FakeServer):
    """Base of the chat fakes: the streaming plumbing."""

    #: Content type of a streamed answer.
    stream_type = "text/event-stream"

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.chat_script: deque[ChatReply] = deque()

    def push(self, *replies: Any) -> None:  # type: ignore[override]
        """Answer the next chat requests with these replies, in order."""
        self.chat_script.extend(replies)

    @property
    def chat_requests(self) -> list[Seen]:
        return [r for r in self.requests if self.is_chat(r)]

    # ---- per provider ----------------------------------------------------------------------
    def is_chat(self, seen: Seen) -> bool:
        raise NotImplementedError

    def is_stream(self, seen: Seen) -> bool:
        raise NotImplementedError

    def whole(self, seen: Seen, text: str) -> Any:
        raise NotImplementedError

    def frame(self, seen: Seen, piece: str) -> bytes:
        raise NotImplementedError

    def finish(self, seen: Seen, text: str) -> list[bytes]:
        raise NotImplementedError

    def prompt_tokens(self, seen: Seen) -> int:
        return tokens(json.dumps(seen.body))

    # ---- plumbing ----------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        n = int(h.headers.get("content-length") or 0)
        raw = h.rfile.read(n) if n else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        seen = Seen(
            method,
            h.path,
            {k.lower(): v for k, v in h.headers.items()},
            body,
            raw,
            time.monotonic(),
        )
        with self._lock:
            self.requests.append(seen)
            chat = self.is_chat(seen)
            reply = (self.chat_script.popleft() if self.chat_script else None) if chat else None
        try:
            if not chat:
                self._json(h, 404, {"error": "not found"}, {})
                return
            reply = reply or ChatReply()
            time.sleep(reply.delay_s)
            if reply.status != 200:
                self._json(h, reply.status, reply.body, reply.headers)
                return
            pieces = DEFAULT_PIECES if reply.pieces is None else reply.pieces
            text = "".join(pieces)
            if not self.is_stream(seen):
                self._json(h, 200, self.whole(seen, text), reply.headers)
                return
            frames = [self.frame(seen, p) for p in pieces]
            if not reply.unfinished:
                frames += self.finish(seen, text)
            h.send_response(200)
            h.send_header("content-type", self.stream_type)
            h.send_header("transfer-encoding", "chunked")
            for k, v in reply.headers.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.flush()
            time.sleep(reply.first_piece_delay_s)
            for i, data in enumerate(frames):
                if reply.cut_after is not None and i == reply.cut_after:
                    time.sleep(reply.stall_s)
                    h.close_connection = True
                    h.connection.shutdown(socket.SHUT_RDWR)
                    return
                h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                h.wfile.flush()
            h.wfile.write(b"0\r\n\r\n")
            h.wfile.flush()
            with self._lock:
                self.completed.append(seen)
        except (BrokenPipeError, ConnectionResetError, OSError):  # the client gave up
            pass

    @staticmethod
    def _json(h: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str]) -> None:
        payload = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("content-type", "application/json")
        h.send_header("content-length", str(len(payload)))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(payload)


# ---- OpenAI ----------------------------------------------------------------------------------
class FakeOpenAIChat(FakeChatServer):
    """``/v1/chat/completions`` as api.openai.com answers it."""

    def is_chat(self, seen: Seen) -> bool:
        return seen.method == "POST" and seen.path.rstrip("/").endswith("/chat/completions")

    def is_stream(self, seen: Seen) -> bool:
        return bool((seen.body or {}).get("stream"))

    def _usage(self, seen: Seen, text: str) -> dict[str, int]:
        p, c = self.prompt_tokens(seen), tokens(text)
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

    def whole(self, seen: Seen, text: str) -> Any:
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1700000000,
            "model": (seen.body or {}).get("model", ""),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": self._usage(seen, text),
        }

    def _chunk(self, seen: Seen, choices: list[Any], usage: Any = None) -> bytes:
        body = {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": (seen.body or {}).get("model", ""),
            "choices": choices,
            "usage": usage,
        }
        return f"data: {json.dumps(body)}\n\n".encode()

    def frame(self, seen: Seen, piece: str) -> bytes:
        delta = {"role": "assistant", "content": piece}
        return self._chunk(seen, [{"index": 0, "delta": delta, "finish_reason": None}])

    def finish(self, seen: Seen, text: str) -> list[bytes]:
        out = [self._chunk(seen, [{"index": 0, "delta": {}, "finish_reason": "stop"}])]
        if ((seen.body or {}).get("stream_options") or {}).get("include_usage"):
            out.append(self._chunk(seen, [], self._usage(seen, text)))
        return [*out, b"data: [DONE]\n\n"]


# ---- Ollama ----------------------------------------------------------------------------------
class FakeOllamaChat(FakeChatServer):
    """``/api/chat`` of an Ollama server."""

    stream_type = "application/x-ndjson"

    def is_chat(self, seen: Seen) -> bool:
        return seen.method == "POST" and seen.path == "/api/chat"

    def is_stream(self, seen: Seen) -> bool:
        return (seen.body or {}).get("stream", True) is not False

    def _part(self, seen: Seen, content: str, *, done: bool, text: str = "") -> dict[str, Any]:
        part: dict[str, Any] = {
            "model": (seen.body or {}).get("model", ""),
            "created_at": "2025-01-01T00:00:00.000000Z",
            "message": {"role": "assistant", "content": content},
            "done": done,
        }
        if done:
            part.update(
                done_reason="stop",
                total_duration=1_000_000,
                prompt_eval_count=self.prompt_tokens(seen),
                eval_count=tokens(text),
            )
        return part

    def whole(self, seen: Seen, text: str) -> Any:
        return self._part(seen, text, done=True, text=text)

    def frame(self, seen: Seen, piece: str) -> bytes:
        return (json.dumps(self._part(seen, piece, done=False)) + "\n").encode()

    def finish(self, seen: Seen, text: str) -> list[bytes]:
        return [(json.dumps(self._part(seen, "", done=True, text=text)) + "\n").encode()]


# ---- Gemini ----------------------------------------------------------------------------------
_GEMINI = re.compile(
    r"^/v1beta/models/(?P<model>[^/:]+):(?P<verb>generateContent|streamGenerateContent)"
)


class FakeGeminiChat(FakeChatServer):
    """``generateContent`` / ``streamGenerateContent?alt=sse`` of the Gemini API."""

    def is_chat(self, seen: Seen) -> bool:
        return seen.method == "POST" and bool(_GEMINI.match(seen.path))

    def is_stream(self, seen: Seen) -> bool:
        m = _GEMINI.match(seen.path)
        return m is not None and m["verb"] == "streamGenerateContent"

    def _response(self, seen: Seen, text: str, *, finish: bool, full: str = "") -> dict[str, Any]:
        candidate: dict[str, Any] = {
            "content": {"parts": [{"text": text}], "role": "model"},
            "index": 0,
        }
        if finish:
            candidate["finishReason"] = "STOP"
        p = self.prompt_tokens(seen)
        c = tokens(full) if finish else 0
        return {
            "candidates": [candidate],
            "usageMetadata": {
                "promptTokenCount": p,
                "candidatesTokenCount": c,
                "totalTokenCount": p + c,
            },
            "modelVersion": "gemini-2.5-flash",
        }

    def whole(self, seen: Seen, text: str) -> Any:
        return self._response(seen, text, finish=True, full=text)

    def frame(self, seen: Seen, piece: str) -> bytes:
        return f"data: {json.dumps(self._response(seen, piece, finish=False))}\r\n\r\n".encode()

    def finish(self, seen: Seen, text: str) -> list[bytes]:
        last = self._response(seen, "", finish=True, full=text)
        return [f"data: {json.dumps(last)}\r\n\r\n".encode()]


# ---- errors as each service sends them -------------------------------------------------------
def openai_error(
    status: int, message: str, *, code: str | None = None, headers: dict[str, str] | None = None
) -> ChatReply:
    body = {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    }
    return ChatReply(status, body, headers or {})


def ollama_error(status: int, message: str, *, headers: dict[str, str] | None = None) -> ChatReply:
    return ChatReply(status, {"error": message}, headers or {})


def gemini_error(
    code: int, status: str, message: str, *, headers: dict[str, str] | None = None
) -> ChatReply:
    return ChatReply(
        code, {"error": {"code": code, "message": message, "status": status}}, headers or {}
    )
