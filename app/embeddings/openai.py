"""The ``openai`` provider: OpenAI's embeddings API, or any OpenAI-compatible server (vLLM,
LM Studio, Hugging Face TEI, LiteLLM proxy, Ollama's ``/v1``) through ``base_url``.

Uses the official ``openai`` SDK with ``max_retries=0`` so that docvec's base class owns retries,
backoff, ``Retry-After`` and the time budget, and ``encoding_format="float"`` (the SDK's default
is base64, which some compatible servers do not implement).

Limits (source: OpenAI API reference, "Create embeddings", ``input`` parameter — also quoted in the
SDK's ``resources/embeddings.py`` docstring): at most 2048 inputs per request, at most 300,000
tokens summed over the inputs of one request, and each input within the model's max input tokens:
8191 for text-embedding-3-small, text-embedding-3-large and text-embedding-ada-002 (OpenAI's
embeddings guide and model pages; the API reference rounds it to 8192, docvec keeps the stricter).

Over-long input policy: inputs are counted with tiktoken in the model's encoding (cl100k_base for
these models) and an input over the model's limit is cut to its first 8191 tokens before it is
sent; the attempt's usage counts it in ``truncated`` and a warning is logged. For a model not in
the table (a compatible server) the limit is ``DOCVEC_EMBEDDING__MAX_INPUT_TOKENS`` if set, else
the text goes as is and the server applies its own policy (TEI truncates, vLLM answers 400).
Tokens of unknown models are counted with cl100k_base as an approximation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from typing_extensions import override

from app.config import EmbeddingSettings
from app.embeddings.base import Embedded, InputKind
from app.embeddings.http_helpers import parse_retry_after
from app.embeddings.remote import RemoteProvider, tiktoken_encoding
from app.errors import DocvecError, ProviderRejected, ProviderUnavailable

if TYPE_CHECKING:
    from openai import OpenAI


@dataclass(frozen=True, slots=True)
class OpenAIModel:
    """A documented model: native dimension, input limit (tokens), and whether it accepts the
    ``dimensions`` parameter (shortened Matryoshka vectors)."""

    dimension: int
    max_input_tokens: int
    shortenable: bool


#: Source: OpenAI platform docs, "Embeddings" guide and model pages (text-embedding-3-small: 1536,
#: text-embedding-3-large: 3072, text-embedding-ada-002: 1536; max input 8191 tokens; only the
#: text-embedding-3 family supports ``dimensions``).
MODELS: dict[str, OpenAIModel] = {
    "text-embedding-3-small": OpenAIModel(1536, 8191, True),
    "text-embedding-3-large": OpenAIModel(3072, 8191, True),
    "text-embedding-ada-002": OpenAIModel(1536, 8191, False),
}

#: Placeholder key for OpenAI-compatible servers without authentication: the SDK insists on a
#: key, and vLLM's documentation uses this one.
NO_KEY = "EMPTY"


def encoding_name(model: str) -> str:
    """tiktoken encoding of ``model``; cl100k_base (OpenAI's embedding encoding) if unknown."""
    try:
        import tiktoken

        return tiktoken.encoding_name_for_model(model)
    except (ImportError, KeyError):
        return "cl100k_base"


class OpenAIProvider(RemoteProvider["OpenAI"]):
    """OpenAI embeddings (or a compatible server) through the ``openai`` SDK.

    Errors: 429 (except ``insufficient_quota``), 408, 409, 5xx, timeouts and connection errors ->
    :class:`ProviderUnavailable` with ``Retry-After``; 400, 401, 403, 404, 422 and an exhausted
    quota -> :class:`ProviderRejected`. Messages are redacted (OpenAI's 401 echoes part of the key).
    """

    name: ClassVar[str] = "openai"
    label: ClassVar[str] = "OpenAI"
    default_model: ClassVar[str] = "text-embedding-3-small"
    sdk_modules: ClassVar[tuple[str, ...]] = ("openai", "tiktoken")
    client_module: ClassVar[str] = "openai"
    client_package: ClassVar[str] = "openai"
    api_key_envs: ClassVar[tuple[str, ...]] = ("OPENAI_API_KEY",)
    requires_api_key: ClassVar[bool] = True
    default_base_url: ClassVar[str | None] = "https://api.openai.com/v1"
    #: OpenAI API reference, embeddings ``input``: "any array must be 2048 dimensions or less".
    max_inputs_per_request: ClassVar[int] = 2048
    #: OpenAI API reference, embeddings ``input``: "all embedding models enforce a maximum of
    #: 300,000 tokens summed across all inputs in a single request".
    max_tokens_per_request: ClassVar[int | None] = 300_000
    overlong_policy: ClassVar[str] = (
        "cut to the model's max input tokens with tiktoken before sending (counted as truncated)"
    )

    def __init__(self, settings: EmbeddingSettings) -> None:
        super().__init__(settings)
        self.spec: OpenAIModel | None = MODELS.get(self.model)
        dims = settings.dimensions
        if dims is not None and self.spec is not None:
            if not self.spec.shortenable:
                raise ProviderRejected(
                    f"{self.model} always makes {self.spec.dimension}-dim vectors and does not "
                    "accept DOCVEC_EMBEDDING__DIMENSIONS; unset it"
                )
            if dims > self.spec.dimension:
                raise ProviderRejected(
                    f"DOCVEC_EMBEDDING__DIMENSIONS={dims} exceeds {self.model}'s "
                    f"{self.spec.dimension} dimensions"
                )
        self._encoding_name = encoding_name(self.model)

    # ---- limits, tokens, dimension -------------------------------------------------------------
    @override
    def model_max_input_tokens(self) -> int | None:
        spec = MODELS.get(self.model)
        return spec.max_input_tokens if spec else None

    def _tokens(self, text: str) -> list[int]:
        try:
            enc = tiktoken_encoding(self._encoding_name)
        except Exception as exc:  # no cached encoding and no internet
            raise ProviderRejected(
                f"tiktoken encoding {self._encoding_name} unavailable ({type(exc).__name__}); "
                "set TIKTOKEN_CACHE_DIR to a folder holding it"
            ) from None
        return enc.encode(text, disallowed_special=())

    @override
    def count_tokens(self, text: str) -> int:
        return max(1, len(self._tokens(text)))

    @override
    def truncate(self, text: str, max_tokens: int) -> str:
        enc = tiktoken_encoding(self._encoding_name)
        tokens = self._tokens(text)
        keep = max_tokens
        while True:
            # Decoding a cut that splits a multi-byte character yields U+FFFD, which can encode
            # to more tokens: shorten until the text really fits.
            cut = enc.decode(tokens[:keep])
            if len(self._tokens(cut)) <= max_tokens or keep <= 1:
                return cut
            keep -= 1

    @override
    def documented_dimension(self) -> int | None:
        return self.spec.dimension if self.spec else None

    # ---- the call ----------------------------------------------------------------------------
    @override
    def _client_key(self) -> str | None:
        if self.settings.base_url is not None:
            _, key = self.api_key()
            return key or NO_KEY  # a compatible server without authentication
        return super()._client_key()

    @override
    def _missing_key_message(self) -> str:
        return (
            super()._missing_key_message()
            + " (DOCVEC_EMBEDDING__API_KEY_ENV names another variable)"
        )

    @override
    def _build_client(self, key: str | None) -> OpenAI:
        from openai import OpenAI

        return OpenAI(
            api_key=key,
            base_url=self.base_url,
            timeout=self.settings.request_timeout_s,
            max_retries=0,  # docvec's base class owns retries
        )

    @override
    def _embed_batch(self, texts: list[str], *, kind: InputKind) -> Embedded:
        client = self._client()
        kwargs: dict[str, Any] = {"model": self.model, "input": texts, "encoding_format": "float"}
        if self.settings.dimensions is not None:
            kwargs["dimensions"] = self.settings.dimensions
        with self._mapped_errors():
            response = client.embeddings.create(**kwargs)
        # Items carry their index; a server may answer out of order.
        data = sorted(response.data, key=lambda item: item.index)
        vectors = [list(item.embedding) for item in data]
        usage = getattr(response, "usage", None)
        tokens = getattr(usage, "total_tokens", None) if usage is not None else None
        return Embedded(vectors, tokens if isinstance(tokens, int) else None)

    @override
    def _map_error(self, exc: Exception) -> DocvecError | None:
        import openai

        if isinstance(exc, openai.APIStatusError):
            return self._status_error(exc)
        if isinstance(exc, openai.APITimeoutError):
            return ProviderUnavailable(
                f"openai: no answer from {self.base_url} within "
                f"{self.settings.request_timeout_s:g}s"
            )
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc
            return ProviderUnavailable(
                f"openai: cannot reach {self.base_url}: "
                + self._redact(f"{type(cause).__name__}: {cause}")
            )
        return super()._map_error(exc)

    @override
    def _network_message(self, exc: BaseException) -> str:
        return f"openai: network error: {self._redact(f'{type(exc).__name__}: {exc}')}"

    def _status_error(self, exc: Any) -> ProviderUnavailable | ProviderRejected:
        status = int(exc.status_code)
        body = exc.body
        message = body.get("message") if isinstance(body, dict) else None
        code = body.get("code") if isinstance(body, dict) else None
        what = self._status_line(status, message or exc.message, code)
        if status == 429 and code == "insufficient_quota":
            # A 429 that waiting does not fix: the account is out of credit.
            return ProviderRejected(what + " (add credit, then re-vectorize)")

        def retry_after() -> float | None:
            headers = dict(exc.response.headers) if exc.response is not None else None
            return parse_retry_after(headers)

        return self._http_error(status, what, retry_after_s=retry_after)

    @override
    def _rejection_hint(self, status: int) -> str:
        if status == 401:
            return " (check the key in " + " or ".join(self.api_key_names()) + ")"
        if status == 404:
            return f" (is the model {self.model!r} served at {self.base_url}?)"
        return ""
