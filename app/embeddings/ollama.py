"""The ``ollama`` provider: an Ollama server's ``/api/embed`` (batch input), through the official
``ollama`` SDK.

Limits: Ollama documents no cap on inputs per request or tokens per request (API reference,
"Generate Embeddings", https://github.com/ollama/ollama/blob/main/docs/api.md); docvec sends
``batch_size`` inputs per request (default 32), which bounds the memory one request takes on the
server.

Over-long input policy: docvec sends ``truncate: true`` explicitly — documented as "truncates the
end of each input to fit within context length" (the server's default, but stated so that a
changed default cannot make long chunks fail). The server knows the model's context; docvec does
not cut on the client side unless ``DOCVEC_EMBEDDING__MAX_INPUT_TOKENS`` is set (then by ~4
characters per token).

Asymmetric models get their documented prefixes (nomic-embed-text: ``search_document: `` /
``search_query: ``; mxbai-embed-large: a query instruction): see ``prefixes.MODEL_PREFIXES``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
from typing_extensions import override

from app.config import EmbeddingSettings
from app.embeddings.base import Embedded, InputKind
from app.embeddings.http_helpers import parse_retry_after, transient_status
from app.embeddings.prefixes import base_model_name
from app.embeddings.remote import MAX_MESSAGE_CHARS, RemoteProvider
from app.errors import DocvecError, ProviderRejected, ProviderUnavailable

if TYPE_CHECKING:
    from ollama import Client

#: Output sizes of models in the Ollama library whose every tag has the same size (sources: the
#: model pages on ollama.com/library and the upstream model cards). Others are probed once.
DIMENSIONS: dict[str, int] = {
    "nomic-embed-text": 768,
    "mxbai-embed-large": 1024,
    "all-minilm": 384,
    "bge-m3": 1024,
    "bge-large": 1024,
    "snowflake-arctic-embed2": 1024,
    "embeddinggemma": 768,
    "paraphrase-multilingual": 768,
}


class OllamaProvider(RemoteProvider["Client"]):
    """Embeddings from an Ollama server (default ``http://localhost:11434``).

    Errors: 429, 408, 5xx, refused connections and timeouts -> :class:`ProviderUnavailable`
    (``Retry-After`` read from the response, for proxies and ollama.com); 400, 401, 403, 404
    (e.g. "model not found, try pulling it first") -> :class:`ProviderRejected`.
    """

    name: ClassVar[str] = "ollama"
    label: ClassVar[str] = "Ollama"
    default_model: ClassVar[str] = "nomic-embed-text"
    sdk_modules: ClassVar[tuple[str, ...]] = ("ollama",)
    client_module: ClassVar[str] = "ollama"
    client_package: ClassVar[str] = "ollama"
    #: Only needed for ollama.com or an authenticating proxy.
    api_key_envs: ClassVar[tuple[str, ...]] = ("OLLAMA_API_KEY",)
    default_base_url: ClassVar[str | None] = "http://localhost:11434"
    #: No documented limit; the settings' own ceiling (4096) applies.
    max_inputs_per_request: ClassVar[int] = 4096
    max_tokens_per_request: ClassVar[int | None] = None
    overlong_policy: ClassVar[str] = (
        "sent with truncate=true: the server cuts each input to the model's context"
    )

    def __init__(self, settings: EmbeddingSettings) -> None:
        super().__init__(settings)
        # The SDK turns HTTP errors into ResponseError without the headers: keep the last
        # response's Retry-After per thread (each thread sends one request at a time).
        self._last = threading.local()

    @override
    def documented_dimension(self) -> int | None:
        return DIMENSIONS.get(base_model_name(self.model))

    @override
    def _close_client(self, client: Client) -> None:
        client._client.close()  # ollama.Client has no close(); its httpx.Client does

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
    def _embed_batch(self, texts: list[str], *, kind: InputKind) -> Embedded:
        client = self._client()
        self._last.retry_after = None
        with self._mapped_errors():
            response = client.embed(
                model=self.model,
                input=texts,
                truncate=True,
                dimensions=self.settings.dimensions,
            )
        vectors = [list(v) for v in response.embeddings]
        tokens = response.prompt_eval_count
        return Embedded(vectors, tokens if isinstance(tokens, int) else None)

    @override
    def _map_error(self, exc: Exception) -> DocvecError | None:
        from ollama import ResponseError

        if isinstance(exc, ResponseError):
            return self._status_error(exc)
        return super()._map_error(exc)

    @override
    def _network_message(self, exc: BaseException) -> str:
        # ollama raises the builtin ConnectionError with its own text on refusal.
        detail = "connection refused" if type(exc) is ConnectionError else str(exc)
        return (
            f"ollama: cannot reach {self.base_url} ({type(exc).__name__}: "
            f"{self._redact(detail)}); is `ollama serve` running?"
        )

    def _status_error(self, exc: Any) -> ProviderUnavailable | ProviderRejected:
        status = int(exc.status_code)
        text = self._redact(str(exc.error)).strip()[:MAX_MESSAGE_CHARS]
        # Unlike _status_line, the colon stays when the server gave no text.
        what = f"ollama: HTTP {status}: {text}"
        return self._http_error(
            status,
            what,
            retry_after_s=lambda: getattr(self._last, "retry_after", None),
            # -1: an error reported inside a streamed answer; treat as the server failing.
            transient=status < 0 or transient_status(status),
        )

    @override
    def _rejection_hint(self, status: int) -> str:
        return f" (run `ollama pull {self.model}` on {self.base_url})" if status == 404 else ""
