"""The ``ollama`` chat provider: an Ollama server's ``POST /api/chat`` through the official
``ollama`` SDK; streamed, the answer comes as NDJSON, one ``{"message": {"content"}, "done"}``
object per line, the last with ``done: true``, ``done_reason`` and the token counts
``prompt_eval_count`` / ``eval_count`` (Ollama API reference, "Generate a chat completion").

Options sent (Ollama's ``Modelfile`` parameters): ``temperature``; ``num_predict``, the answer's
token limit (``max_answer_tokens``); ``num_ctx``, the context window (``context_window_tokens``),
so that the packed sources are not cut by a smaller default window on the server (Ollama's own
default is a few thousand tokens).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
from typing_extensions import override

from app.chat.base import ChatPrompt, Piece, RemoteChatProvider, close_iterator
from app.config import ChatSettings
from app.embeddings.http_helpers import parse_retry_after, transient_status
from app.embeddings.remote import MAX_MESSAGE_CHARS
from app.errors import DocvecError, ProviderUnavailable

if TYPE_CHECKING:
    from ollama import Client


class OllamaChat(RemoteChatProvider["Client"]):
    """Answers from an Ollama server (default ``http://localhost:11434``).

    Errors: 429, 408, 5xx, refused connections, timeouts, an error line or a malformed line inside
    the stream -> :class:`ProviderUnavailable` (``Retry-After`` read from the response, for
    proxies and ollama.com); 400, 401, 403, 404 ("model not found, try pulling it first") ->
    :class:`ProviderRejected`.
    """

    name: ClassVar[str] = "ollama"
    label: ClassVar[str] = "Ollama"
    default_model: ClassVar[str | None] = "llama3.2"
    sdk_modules: ClassVar[tuple[str, ...]] = ("ollama",)
    client_module: ClassVar[str] = "ollama"
    client_package: ClassVar[str] = "ollama"
    #: Only needed for ollama.com or an authenticating proxy.
    api_key_envs: ClassVar[tuple[str, ...]] = ("OLLAMA_API_KEY",)
    default_base_url: ClassVar[str | None] = "http://localhost:11434"

    def __init__(self, settings: ChatSettings) -> None:
        super().__init__(settings)
        # The SDK turns HTTP errors into ResponseError without the headers: keep the last
        # response's Retry-After per thread (each thread sends one request at a time).
        self._last = threading.local()

    @override
    def _build_client(self, key: str | None) -> Client:
        from ollama import Client

        headers = {"authorization": f"Bearer {key}"} if key else None

        def remember(response: httpx.Response) -> None:
            self._last.retry_after = parse_retry_after(dict(response.headers))

        return Client(
            host=self.base_url,
            timeout=self.settings.request_timeout_s,
            headers=headers,
            event_hooks={"response": [remember]},
        )

    @override
    def _close_client(self, client: Client) -> None:
        client._client.close()  # ollama.Client has no close(); its httpx.Client does

    def _options(self, max_tokens: int) -> dict[str, Any]:
        return {
            "temperature": self.settings.temperature,
            "num_predict": max_tokens,
            "num_ctx": self.settings.context_window_tokens,
        }

    @staticmethod
    def _piece(part: Any) -> Piece:
        message = part.message
        done = bool(part.done)
        return Piece(
            text=(message.content or "") if message is not None else "",
            prompt_tokens=part.prompt_eval_count if done else None,
            completion_tokens=part.eval_count if done else None,
            finish_reason=(part.done_reason or "stop") if done else None,
        )

    @override
    def _complete(self, client: Client, prompt: ChatPrompt, *, max_tokens: int) -> Piece:
        self._last.retry_after = None
        response = client.chat(
            model=self.model or "",
            messages=prompt.messages(),
            stream=False,
            options=self._options(max_tokens),
        )
        return self._piece(response)

    @override
    def _stream(self, client: Client, prompt: ChatPrompt, *, max_tokens: int) -> Iterator[Piece]:
        self._last.retry_after = None
        parts = client.chat(
            model=self.model or "",
            messages=prompt.messages(),
            stream=True,
            options=self._options(max_tokens),
        )
        try:
            for part in parts:
                yield self._piece(part)
        finally:
            close_iterator(
                parts
            )  # the SDK's generator: leaves its `with` block, closing the response

    @override
    def _map_error(self, exc: Exception) -> DocvecError | None:
        from ollama import ResponseError

        if isinstance(exc, ResponseError):
            status = int(exc.status_code)
            text = self._redact(str(exc.error)).strip()[:MAX_MESSAGE_CHARS]
            return self._http_error(
                status,
                f"ollama: HTTP {status}: {text}" if status > 0 else f"ollama: {text}",
                retry_after_s=getattr(self._last, "retry_after", None),
                # -1: an error line inside a streamed answer; the server failed mid-answer.
                transient=status < 0 or transient_status(status),
            )
        if isinstance(exc, json.JSONDecodeError):  # a line cut short by a dropped stream
            return ProviderUnavailable(f"ollama: {self.base_url} sent a malformed stream line")
        if type(exc) is ConnectionError:  # the SDK's own text on a refused connection
            return ProviderUnavailable(
                f"ollama: cannot reach {self.base_url} (connection refused); "
                "is `ollama serve` running?"
            )
        return super()._map_error(exc)

    @override
    def _rejection_hint(self, status: int) -> str:
        if status == 404:
            return f" (run `ollama pull {self.model}` on {self.base_url})"
        return super()._rejection_hint(status)
