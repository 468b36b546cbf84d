"""The ``gemini`` provider: the Gemini Developer API through Google's ``google-genai`` SDK
(``google-generativeai`` reached end of support on 2025-11-30).

``client.models.embed_content(model, contents=[...], config=EmbedContentConfig(task_type=...,
output_dimensionality=...))`` posts to ``/v1beta/models/{model}:batchEmbedContents`` with one
request per input (``{"requests": [{"model", "content": {"parts": [{"text"}]}, "taskType",
"outputDimensionality"}]}``) and gets ``{"embeddings": [{"values": [...]}]}`` back, in order.

Asymmetric retrieval: documents are embedded with task type ``RETRIEVAL_DOCUMENT``, queries with
``RETRIEVAL_QUERY`` (Gemini API docs, "Embeddings", task types).

Limits (sources): at most 100 requests per ``batchEmbedContents`` call — the API answers 400
"at most 100 requests can be in one batch" above that (documented with ``BatchEmbedContents``;
observed by many clients); 2,048 input tokens per text for gemini-embedding-001 and
text-embedding-004 (model pages on ai.google.dev, "Input token limit"). The SDK's own retries
are off (no ``retry_options``): docvec's base class owns them.

Over-long input policy: an input over 2,048 tokens is cut before sending, counted as
``truncated`` and logged. Gemini's tokenizer is not available offline, so tokens are counted with
tiktoken's cl100k_base — an approximation, not Gemini's count: its 100k vocabulary is smaller than
Gemini's 256k SentencePiece vocabulary, so it usually splits text into more pieces and the cut
tends to err on the short side. docvec's default chunks (1,000 characters, ~250 tokens) are far
below the limit; the cut matters only for large token-sized chunks.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from app.config import EmbeddingSettings
from app.embeddings.base import (
    Embedded,
    EmbeddingProvider,
    InputKind,
    is_network_error,
    parse_duration,
    parse_retry_after,
    redact,
    tiktoken_encoding,
    transient_status,
)
from app.errors import ProviderRejected, ProviderUnavailable

if TYPE_CHECKING:
    from google.genai import Client

#: Task types per input kind (Gemini API docs, "Embeddings" > "Task types").
TASK_TYPES: dict[InputKind, str] = {
    "document": "RETRIEVAL_DOCUMENT",
    "query": "RETRIEVAL_QUERY",
}


@dataclass(frozen=True, slots=True)
class GeminiModel:
    """A documented model: default dimension, input limit (tokens), accepted output sizes."""

    dimension: int
    max_input_tokens: int
    min_dimension: int


#: Source: ai.google.dev model pages. gemini-embedding-001: 3072 dims by default, flexible
#: 128-3072 (Matryoshka; 768, 1536, 3072 recommended), 2048 input tokens. text-embedding-004:
#: 768 dims (shortenable), 2048 input tokens.
MODELS: dict[str, GeminiModel] = {
    "gemini-embedding-001": GeminiModel(3072, 2048, 128),
    "text-embedding-004": GeminiModel(768, 2048, 1),
}


def _model_id(model: str) -> str:
    return model.removeprefix("models/")


class GeminiProvider(EmbeddingProvider):
    """Gemini embeddings with task types, through ``google-genai``.

    Errors (``google.genai.errors.APIError`` and its ``ClientError``/``ServerError``): 429
    (RESOURCE_EXHAUSTED; ``Retry-After`` or the ``RetryInfo.retryDelay`` detail), 408 and 5xx ->
    :class:`ProviderUnavailable`; 400 (including an invalid key), 401, 403, 404 ->
    :class:`ProviderRejected`; timeouts and refused connections -> :class:`ProviderUnavailable`.
    """

    name: ClassVar[str] = "gemini"
    default_model: ClassVar[str] = "gemini-embedding-001"
    sdk_modules: ClassVar[tuple[str, ...]] = ("google.genai", "tiktoken")
    #: The google-genai SDK's own order: GOOGLE_API_KEY wins when both are set.
    api_key_envs: ClassVar[tuple[str, ...]] = ("GOOGLE_API_KEY", "GEMINI_API_KEY")
    requires_api_key: ClassVar[bool] = True
    default_base_url: ClassVar[str | None] = "https://generativelanguage.googleapis.com"
    remote: ClassVar[bool] = True
    default_concurrency: ClassVar[int] = 4
    #: batchEmbedContents: "at most 100 requests can be in one batch".
    max_inputs_per_request: ClassVar[int] = 100
    max_tokens_per_request: ClassVar[int | None] = None
    overlong_policy: ClassVar[str] = (
        "cut to the model's input token limit before sending (approximate count: tiktoken "
        "cl100k_base)"
    )
    #: API version of the Gemini Developer API serving batchEmbedContents.
    api_version: ClassVar[str] = "v1beta"

    def __init__(self, settings: EmbeddingSettings) -> None:
        super().__init__(settings)
        self.spec: GeminiModel | None = MODELS.get(_model_id(self.model))
        dims = settings.dimensions
        if (
            dims is not None
            and self.spec is not None
            and not self.spec.min_dimension <= dims <= self.spec.dimension
        ):
            raise ProviderRejected(
                f"DOCVEC_EMBEDDING__DIMENSIONS={dims} is outside {self.model}'s range "
                f"{self.spec.min_dimension}-{self.spec.dimension}"
            )
        self._client_obj: Client | None = None
        self._client_lock = threading.Lock()
        self._key: str | None = None

    # ---- limits, tokens, dimension -------------------------------------------------------------
    def model_max_input_tokens(self) -> int | None:
        spec = MODELS.get(_model_id(self.model))
        return spec.max_input_tokens if spec else None

    def count_tokens(self, text: str) -> int:
        try:
            return max(1, len(tiktoken_encoding("cl100k_base").encode(text, disallowed_special=())))
        except Exception:  # no tiktoken data offline: ~4 characters per token (Gemini docs)
            return super().count_tokens(text)

    def truncate(self, text: str, max_tokens: int) -> str:
        try:
            enc = tiktoken_encoding("cl100k_base")
        except Exception:
            return super().truncate(text, max_tokens)
        cut = enc.decode(enc.encode(text, disallowed_special=())[:max_tokens])
        return cut.rstrip("\ufffd")

    def known_dimension(self) -> int | None:
        if self._dimension is not None:
            return self._dimension
        if self.settings.dimensions is not None:
            return self.settings.dimensions
        return self.spec.dimension if self.spec else None

    def _load_dimension(self) -> int:
        return self.known_dimension() or self._probe_dimension()

    # ---- the call ----------------------------------------------------------------------------
    def _client(self) -> Client:
        with self._client_lock:
            if self._client_obj is None:
                try:
                    from google import genai
                    from google.genai import types
                except ImportError:
                    raise ProviderRejected(
                        "gemini provider unavailable: pip install google-genai"
                    ) from None
                _, key = self.api_key()
                if key is None:
                    raise ProviderRejected(
                        "Gemini needs an API key: set " + " or ".join(self.api_key_names())
                    )
                self._key = key
                options = types.HttpOptions(
                    api_version=self.api_version,
                    timeout=int(self.settings.request_timeout_s * 1000),  # milliseconds
                )
                if self.settings.base_url:
                    options.base_url = self.settings.base_url
                self._client_obj = genai.Client(api_key=key, vertexai=False, http_options=options)
            return self._client_obj

    def _embed_batch(self, texts: list[str], *, kind: InputKind) -> Embedded:
        from google.genai import errors, types

        client = self._client()
        config = types.EmbedContentConfig(
            task_type=TASK_TYPES[kind], output_dimensionality=self.settings.dimensions
        )
        try:
            response = client.models.embed_content(
                model=self.model, contents=list(texts), config=config
            )
        except errors.APIError as exc:
            raise self._status_error(exc) from None
        except Exception as exc:
            if is_network_error(exc):
                raise ProviderUnavailable(
                    f"gemini: cannot reach {self.base_url}: "
                    + self._redact(f"{type(exc).__name__}: {exc}")
                ) from None
            raise
        vectors = [list(e.values or []) for e in response.embeddings or []]
        meta = response.usage_metadata
        tokens = meta.prompt_token_count if meta is not None else None
        return Embedded(vectors, tokens if isinstance(tokens, int) else None)

    def _redact(self, text: str) -> str:
        return redact(text, [self._key])

    def _status_error(self, exc: Any) -> ProviderUnavailable | ProviderRejected:
        status = int(exc.code or 0)
        text = self._redact(str(exc.message or "")).strip()[:500]
        what = f"gemini: HTTP {status}" + (f" {exc.status}" if exc.status else "")
        what += f": {text}" if text else ""
        if transient_status(status):
            response = getattr(exc, "response", None)
            headers = dict(response.headers) if response is not None else None
            retry_after = parse_retry_after(headers)
            if retry_after is None:
                retry_after = _retry_delay(exc.details)
            return ProviderUnavailable(what, retry_after_s=retry_after)
        if status == 404:
            what += f" (is {self.model!r} an embedding model of the Gemini API?)"
        return ProviderRejected(what)


def _retry_delay(body: Any) -> float | None:
    """Seconds of a ``google.rpc.RetryInfo`` detail (``{"retryDelay": "36s"}``), if any."""
    error = body.get("error", body) if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    for d in details or []:
        if isinstance(d, dict) and str(d.get("@type", "")).endswith("google.rpc.RetryInfo"):
            return parse_duration(str(d.get("retryDelay", "")))
    return None
