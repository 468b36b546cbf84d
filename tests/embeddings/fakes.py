"""Loopback HTTP servers that speak the embedding providers' wire formats, for the real SDKs.

Each server runs a ``ThreadingHTTPServer`` on 127.0.0.1 (an ephemeral port) in a thread, records
every request (path, headers, JSON body, arrival time), answers embedding requests with
deterministic vectors, enforces the provider's documented limits the way the real service does
(an over-limit request gets the real service's 400), and plays a per-test script of replies first:
429 with ``Retry-After``, 5xx, 401 with the provider's error JSON, slow answers, dropped
connections.

Vectors are a hashed bag of words (:func:`bow_vector`): texts sharing words get similar vectors,
so search over real documents behaves meaningfully.

- :class:`FakeOpenAI`: ``POST /v1/embeddings`` (``input`` list, ``dimensions``, ``encoding_format``
  float or base64), errors ``{"error": {"message", "type", "param", "code"}}``.
- :class:`FakeOllama`: ``POST /api/embed`` (``input`` list, ``truncate``, ``dimensions``), errors
  ``{"error": "..."}``.
- :class:`FakeGemini`: ``POST /v1beta/models/{model}:batchEmbedContents`` (``requests[]`` with
  ``taskType``, ``outputDimensionality``), errors ``{"error": {"code", "message", "status",
  "details"}}``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import re
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import tiktoken

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    _WORD.findall(
        """
        the and for are but not you all any can had her was one our out has his how its may new
        now see two who did get use that with this from they will have what when your which
        their there been more also into than them then some these would other such only over
        """
    )
)


def bow_vector(text: str, dim: int) -> list[float]:
    """A deterministic unit vector of ``dim`` floats: words (3+ letters, no stop words) hashed to
    signed buckets, counted with sublinear weight."""
    counts: dict[str, int] = {}
    for w in _WORD.findall(text.lower()):
        if len(w) >= 3 and w not in _STOP:
            counts[w] = counts.get(w, 0) + 1
    v = [0.0] * dim
    for w, n in counts.items():
        h = hashlib.blake2b(w.encode(), digest_size=8).digest()
        v[int.from_bytes(h[:4], "little") % dim] += (1.0 + math.log(n)) * (1 if h[4] & 1 else -1)
    norm = math.sqrt(sum(x * x for x in v))
    if norm == 0:
        v[0], norm = 1.0, 1.0
    return [x / norm for x in v]


def close(a: list[list[float]], b: list[list[float]], tol: float = 1e-6) -> bool:
    """Same shape and every float within ``tol`` (vectors pass through JSON and float32)."""
    return len(a) == len(b) and all(
        len(x) == len(y) and all(abs(p - q) <= tol for p, q in zip(x, y, strict=True))
        for x, y in zip(a, b, strict=True)
    )


_ENC = tiktoken.get_encoding("cl100k_base")


def tokens(text: str) -> int:
    """Tokens of ``text`` in cl100k_base (OpenAI's embedding models' encoding)."""
    return len(_ENC.encode(text, disallowed_special=()))


@dataclass
class Reply:
    """One scripted answer. ``body=None`` means "the normal successful answer"."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    #: Close the connection without answering (a reset / dropped connection).
    drop: bool = False
    #: Only requests for which this is true get this reply (None: the next request).
    match: Callable[[Seen], bool] | None = None


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw: bytes
    at: float


class FakeServer:
    """Base of the fakes: the HTTP plumbing, the script and the request log.

    Args:
        dim: vector size when the request does not ask for one.
        random_delay_s: each embedding answer waits a random time in this range (makes
            concurrent batches complete out of order).
    """

    def __init__(self, *, dim: int = 16, random_delay_s: tuple[float, float] = (0.0, 0.0)) -> None:
        self.dim = dim
        self.random_delay_s = random_delay_s
        self.script: deque[Reply] = deque()
        self.requests: list[Seen] = []
        #: Requests in the order their answers were sent.
        self.completed: list[Seen] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._rng = random.Random(1234)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                server._handle(self, "GET")

            def do_POST(self) -> None:
                server._handle(self, "POST")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # ---- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def push(self, *replies: Reply) -> None:
        """Answer the next embedding requests with these replies, in order."""
        self.script.extend(replies)

    @property
    def embed_requests(self) -> list[Seen]:
        return [r for r in self.requests if self.is_embed(r)]

    # ---- per provider ----------------------------------------------------------------------
    def is_embed(self, seen: Seen) -> bool:
        raise NotImplementedError

    def success(self, seen: Seen) -> Reply:
        raise NotImplementedError

    def other(self, seen: Seen) -> Reply:
        return Reply(404, {"error": "not found"})

    # ---- plumbing ----------------------------------------------------------------------------
    def _next_scripted(self, seen: Seen) -> Reply | None:
        for i, reply in enumerate(self.script):
            if reply.match is None or reply.match(seen):
                del self.script[i]
                return reply
        return None

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
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            embed = self.is_embed(seen)
            scripted = self._next_scripted(seen) if embed else None
            extra = self._rng.uniform(*self.random_delay_s) if embed else 0.0
        try:
            reply = scripted or (self.success(seen) if embed else self.other(seen))
            if reply.status == 200 and reply.body is None:  # scripted: a normal answer, late
                normal = self.success(seen)
                reply = Reply(normal.status, normal.body, reply.headers, reply.delay_s, reply.drop)
            time.sleep(reply.delay_s + extra)
            if reply.drop:
                h.close_connection = True
                h.connection.shutdown(socket.SHUT_RDWR)
                return
            payload = json.dumps(reply.body).encode()
            h.send_response(reply.status)
            h.send_header("content-type", "application/json")
            h.send_header("content-length", str(len(payload)))
            for k, v in reply.headers.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(payload)
            with self._lock:
                self.completed.append(seen)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            pass
        finally:
            with self._lock:
                self.in_flight -= 1


# ---- OpenAI ----------------------------------------------------------------------------------
OPENAI_DIMS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072}


def openai_error(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """An error as api.openai.com sends it."""
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return Reply(status, body, headers or {})


class FakeOpenAI(FakeServer):
    """``/v1/embeddings`` with OpenAI's documented limits: 2048 inputs, 300,000 tokens per
    request, 8192 tokens per input (known models)."""

    def __init__(self, *, shuffle: bool = True, **kw: Any) -> None:
        super().__init__(**kw)
        #: Answer ``data`` items in random order (they carry ``index``), as the API allows.
        self.shuffle = shuffle

    def is_embed(self, seen: Seen) -> bool:
        return seen.method == "POST" and seen.path.rstrip("/").endswith("/embeddings")

    def success(self, seen: Seen) -> Reply:
        body = seen.body or {}
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
        model = body.get("model", "")
        if not inputs or any(not isinstance(t, str) or t == "" for t in inputs):
            return openai_error(400, "'$.input' is invalid. Please check the API reference.")
        if len(inputs) > 2048:
            return openai_error(400, f"Too many inputs: {len(inputs)} > 2048")
        counts = [tokens(t) for t in inputs]
        if model in OPENAI_DIMS and max(counts) > 8192:
            return openai_error(
                400,
                f"This model's maximum context length is 8192 tokens, however you requested "
                f"{max(counts)} tokens in your input. Please reduce your input.",
            )
        if sum(counts) > 300_000:
            return openai_error(
                400, f"Requested {sum(counts)} tokens, max 300000 tokens per request"
            )
        dim = body.get("dimensions") or OPENAI_DIMS.get(model, self.dim)
        data = []
        for i, t in enumerate(inputs):
            vec = bow_vector(t, dim)
            emb: Any = vec
            if body.get("encoding_format") == "base64":
                emb = base64.b64encode(struct.pack(f"<{dim}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": emb})
        if self.shuffle:
            self._rng.shuffle(data)
        usage = {"prompt_tokens": sum(counts), "total_tokens": sum(counts)}
        return Reply(200, {"object": "list", "data": data, "model": model, "usage": usage})


# ---- Ollama ----------------------------------------------------------------------------------
OLLAMA_DIMS = {"nomic-embed-text": 768, "all-minilm": 384, "mxbai-embed-large": 1024}


class FakeOllama(FakeServer):
    """``/api/embed`` of an Ollama server with the given models pulled (any model if None)."""

    def __init__(self, *, models: set[str] | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.models = models

    def is_embed(self, seen: Seen) -> bool:
        return seen.method == "POST" and seen.path == "/api/embed"

    def other(self, seen: Seen) -> Reply:
        if seen.path == "/api/version":
            return Reply(200, {"version": "0.12.0"})
        return Reply(404, {"error": "404 page not found"})

    def success(self, seen: Seen) -> Reply:
        body = seen.body or {}
        model = body.get("model", "")
        if self.models is not None and model.split(":")[0] not in self.models:
            return Reply(404, {"error": f'model "{model}" not found, try pulling it first'})
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
        dim = body.get("dimensions") or OLLAMA_DIMS.get(model.split(":")[0], self.dim)
        return Reply(
            200,
            {
                "model": model,
                "embeddings": [bow_vector(t, dim) for t in inputs],
                "total_duration": 14143917,
                "load_duration": 1019500,
                "prompt_eval_count": sum(tokens(t) for t in inputs),
            },
        )


# ---- Gemini ----------------------------------------------------------------------------------
def gemini_error(
    code: int,
    status: str,
    message: str,
    *,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """An error as generativelanguage.googleapis.com sends it."""
    err: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details is not None:
        err["details"] = details
    return Reply(code, {"error": err}, headers or {})


GEMINI_DIMS = {"gemini-embedding-001": 3072, "text-embedding-004": 768}
_GEMINI_PATH = re.compile(r"^/v1beta/models/(?P<model>[^/:]+):batchEmbedContents$")


class FakeGemini(FakeServer):
    """``/v1beta/models/{model}:batchEmbedContents`` with its 100-requests-per-batch limit."""

    def is_embed(self, seen: Seen) -> bool:
        return seen.method == "POST" and bool(_GEMINI_PATH.match(seen.path.split("?")[0]))

    def success(self, seen: Seen) -> Reply:
        m = _GEMINI_PATH.match(seen.path.split("?")[0])
        assert m is not None
        model = m["model"]
        reqs = (seen.body or {}).get("requests") or []
        if len(reqs) > 100:
            return gemini_error(
                400,
                "INVALID_ARGUMENT",
                "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch\n",
            )
        out = []
        for r in reqs:
            if r.get("model") != f"models/{model}":
                return gemini_error(400, "INVALID_ARGUMENT", "model of each request must match")
            text = " ".join(p.get("text", "") for p in r["content"]["parts"])
            dim = r.get("outputDimensionality") or GEMINI_DIMS.get(model, self.dim)
            out.append({"values": bow_vector(text, dim)})
        return Reply(200, {"embeddings": out})
