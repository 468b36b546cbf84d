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

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from app.config import EmbeddingSettings
from app.embeddings.base import (
    Embedded,
    EmbeddingProvider,
    InputKind,
    is_network_error,
    parse_retry_after,
    redact,
    tiktoken_encoding,
    transient_status,
)
from app.errors import ProviderRejected, ProviderUnavailable

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


class OpenAIProvider(EmbeddingProvider):
    """OpenAI embeddings (or a compatible server) through the ``openai`` SDK.

    Errors: 429 (except ``insufficient_quota``), 408, 409, 5xx, timeouts and connection errors ->
    :class:`ProviderUnavailable` with ``Retry-After``; 400, 401, 403, 404, 422 and an exhausted
    quota -> :class:`ProviderRejected`. Messages are redacted (OpenAI's 401 echoes part of the key).
    """

    name: ClassVar[str] = "openai"
    default_model: ClassVar[str] = "text-embedding-3-small"
    sdk_modules: ClassVar[tuple[str, ...]] = ("openai", "tiktoken")
    api_key_envs: ClassVar[tuple[str, ...]] = ("OPENAI_API_KEY",)
    requires_api_key: ClassVar[bool] = True
    default_base_url: ClassVar[str | None] = "https://api.openai.com/v1"
    remote: ClassVar[bool] = True
    default_concurrency: ClassVar[int] = 4
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
        self._client_obj: OpenAI | None = None
        self._client_lock = threading.Lock()
        self._key: str | None = None

    # ---- limits, tokens, dimension -------------------------------------------------------------
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

    def count_tokens(self, text: str) -> int:
        return max(1, len(self._tokens(text)))

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

    def known_dimension(self) -> int | None:
        if self._dimension is not None:
            return self._dimension
        if self.settings.dimensions is not None:
            return self.settings.dimensions
        return self.spec.dimension if self.spec else None

    def _load_dimension(self) -> int:
        return self.known_dimension() or self._probe_dimension()

    # ---- the call ----------------------------------------------------------------------------
    def _client(self) -> OpenAI:
        with self._client_lock:
            if self._client_obj is None:
                try:
                    from openai import OpenAI
                except ImportError:
                    raise ProviderRejected(
                        "openai provider unavailable: pip install openai"
                    ) from None
                _, key = self.api_key()
                if key is None:
                    if self.settings.base_url is None:
                        raise ProviderRejected(
                            "OpenAI needs an API key: set "
                            + " or ".join(self.api_key_names())
                            + " (DOCVEC_EMBEDDING__API_KEY_ENV names another variable)"
                        )
                    key = NO_KEY  # a compatible server without authentication
                self._key = key
                self._client_obj = OpenAI(
                    api_key=key,
                    base_url=self.base_url,
                    timeout=self.settings.request_timeout_s,
                    max_retries=0,  # docvec's base class owns retries
                )
            return self._client_obj

    def _embed_batch(self, texts: list[str], *, kind: InputKind) -> Embedded:
        import openai

        client = self._client()
        kwargs: dict[str, Any] = {"model": self.model, "input": texts, "encoding_format": "float"}
        if self.settings.dimensions is not None:
            kwargs["dimensions"] = self.settings.dimensions
        try:
            response = client.embeddings.create(**kwargs)
        except openai.APIStatusError as exc:
            raise self._status_error(exc) from None
        except openai.APITimeoutError:
            raise ProviderUnavailable(
                f"openai: no answer from {self.base_url} within "
                f"{self.settings.request_timeout_s:g}s"
            ) from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            raise ProviderUnavailable(
                f"openai: cannot reach {self.base_url}: "
                + self._redact(f"{type(cause).__name__}: {cause}")
            ) from None
        except Exception as exc:
            if is_network_error(exc):
                raise ProviderUnavailable(
                    f"openai: network error: {self._redact(f'{type(exc).__name__}: {exc}')}"
                ) from None
            raise
        # Items carry their index; a server may answer out of order.
        data = sorted(response.data, key=lambda d: d.index)
        vectors = [list(d.embedding) for d in data]
        usage = getattr(response, "usage", None)
        tokens = getattr(usage, "total_tokens", None) if usage is not None else None
        return Embedded(vectors, tokens if isinstance(tokens, int) else None)

    def _redact(self, text: str) -> str:
        return redact(text, [self._key])

    def _status_error(self, exc: Any) -> ProviderUnavailable | ProviderRejected:
        status = int(exc.status_code)
        body = exc.body
        message = body.get("message") if isinstance(body, dict) else None
        code = body.get("code") if isinstance(body, dict) else None
        text = self._redact(str(message or exc.message or "")).strip()[:500]
        what = f"openai: HTTP {status}" + (f" {code}" if code else "")
        what += f": {text}" if text else ""
        if status == 429 and code == "insufficient_quota":
            # A 429 that waiting does not fix: the account is out of credit.
            return ProviderRejected(what + " (add credit, then re-vectorize)")
        if transient_status(status):
            headers = dict(exc.response.headers) if exc.response is not None else None
            return ProviderUnavailable(what, retry_after_s=parse_retry_after(headers))
        if status == 401:
            what += " (check the key in " + " or ".join(self.api_key_names()) + ")"
        elif status == 404:
            what += f" (is the model {self.model!r} served at {self.base_url}?)"
        return ProviderRejected(what)
