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

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, cast

from typing_extensions import override

from app.config import EmbeddingSettings
from app.embeddings.base import Embedded, InputKind
from app.embeddings.http_helpers import google_retry_delay, parse_retry_after
from app.embeddings.remote import RemoteProvider, tiktoken_encoding
from app.errors import DocvecError, ProviderRejected, ProviderUnavailable

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


class GeminiProvider(RemoteProvider["Client"]):
    """Gemini embeddings with task types, through ``google-genai``.

    Errors (``google.genai.errors.APIError`` and its ``ClientError``/``ServerError``): 429
    (RESOURCE_EXHAUSTED; ``Retry-After`` or the ``RetryInfo.retryDelay`` detail), 408 and 5xx ->
    :class:`ProviderUnavailable`; 400 (including an invalid key), 401, 403, 404 ->
    :class:`ProviderRejected`; timeouts and refused connections -> :class:`ProviderUnavailable`.
    """

    name: ClassVar[str] = "gemini"
    label: ClassVar[str] = "Gemini"
    default_model: ClassVar[str] = "gemini-embedding-001"
    sdk_modules: ClassVar[tuple[str, ...]] = ("google.genai", "tiktoken")
    client_module: ClassVar[str] = "google.genai"
    client_package: ClassVar[str] = "google-genai"
    #: The google-genai SDK's own order: GOOGLE_API_KEY wins when both are set.
    api_key_envs: ClassVar[tuple[str, ...]] = ("GOOGLE_API_KEY", "GEMINI_API_KEY")
    requires_api_key: ClassVar[bool] = True
    default_base_url: ClassVar[str | None] = "https://generativelanguage.googleapis.com"
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

    # ---- limits, tokens, dimension -------------------------------------------------------------
    @override
    def model_max_input_tokens(self) -> int | None:
        spec = MODELS.get(_model_id(self.model))
        return spec.max_input_tokens if spec else None

    @override
    def count_tokens(self, text: str) -> int:
        try:
            return max(1, len(tiktoken_encoding("cl100k_base").encode(text, disallowed_special=())))
        except Exception:  # no tiktoken data offline: ~4 characters per token (Gemini docs)
            return super().count_tokens(text)

    @override
    def truncate(self, text: str, max_tokens: int) -> str:
        try:
            enc = tiktoken_encoding("cl100k_base")
        except Exception:
            return super().truncate(text, max_tokens)
        cut = enc.decode(enc.encode(text, disallowed_special=())[:max_tokens])
        return cut.rstrip("\ufffd")

    @override
    def documented_dimension(self) -> int | None:
        return self.spec.dimension if self.spec else None

    # ---- the call ----------------------------------------------------------------------------
    @override
    def _build_client(self, key: str | None) -> Client:
        from google import genai
        from google.genai import types

        options = types.HttpOptions(
            api_version=self.api_version,
            timeout=int(self.settings.request_timeout_s * 1000),  # milliseconds
        )
        if self.settings.base_url:
            options.base_url = self.settings.base_url
        return genai.Client(api_key=key, vertexai=False, http_options=options)

    @override
    def _embed_batch(self, texts: list[str], *, kind: InputKind) -> Embedded:
        from google.genai import types

        client = self._client()
        config = types.EmbedContentConfig(
            task_type=TASK_TYPES[kind], output_dimensionality=self.settings.dimensions
        )
        # A list of strings is what the SDK documents; its (invariant) union does not name one.
        contents = cast("types.ContentListUnion", list(texts))
        with self._mapped_errors():
            response = client.models.embed_content(
                model=self.model, contents=contents, config=config
            )
        vectors = [list(e.values or []) for e in response.embeddings or []]
        meta = response.usage_metadata
        tokens = meta.prompt_token_count if meta is not None else None
        return Embedded(vectors, tokens if isinstance(tokens, int) else None)

    @override
    def _map_error(self, exc: Exception) -> DocvecError | None:
        from google.genai import errors

        if isinstance(exc, errors.APIError):
            return self._status_error(exc)
        return super()._map_error(exc)

    def _status_error(self, exc: Any) -> ProviderUnavailable | ProviderRejected:
        status = int(exc.code or 0)
        what = self._status_line(status, exc.message, exc.status)

        def retry_after() -> float | None:
            response = getattr(exc, "response", None)
            headers = dict(response.headers) if response is not None else None
            seconds = parse_retry_after(headers)
            return seconds if seconds is not None else google_retry_delay(exc.details)

        return self._http_error(status, what, retry_after_s=retry_after)

    @override
    def _rejection_hint(self, status: int) -> str:
        if status == 404:
            return f" (is {self.model!r} an embedding model of the Gemini API?)"
        return ""
