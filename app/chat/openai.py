"""The ``openai`` chat provider: OpenAI's Chat Completions API (``POST /v1/chat/completions``), or
any OpenAI-compatible server (vLLM, LM Studio, Ollama's ``/v1``, LiteLLM) through ``base_url``.

Uses the official ``openai`` SDK with ``max_retries=0`` (the base class owns retries, backoff and
``Retry-After``). Streamed answers ask for ``stream_options={"include_usage": true}``: the last
chunk before ``data: [DONE]`` then carries the token counts (OpenAI API reference, "Create chat
completion", ``stream_options``).

The answer's length limit is sent as ``max_completion_tokens`` to OpenAI itself (``max_tokens``
is deprecated there and refused by its reasoning models) and as ``max_tokens`` to compatible
servers, which all read that older name. OpenAI's reasoning models (``o1``, ``o3``, ``o4``,
``gpt-5`` families) accept only the default temperature, so none is sent to them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from typing_extensions import override

from app.chat.base import ChatPrompt, Piece, RemoteChatProvider
from app.embeddings.http_helpers import parse_retry_after
from app.errors import DocvecError, ProviderRejected, ProviderUnavailable

if TYPE_CHECKING:
    from openai import OpenAI

#: Placeholder key for OpenAI-compatible servers without authentication (the SDK insists on one;
#: vLLM's documentation uses this one).
NO_KEY = "EMPTY"

#: Model name prefixes of OpenAI's reasoning models, which refuse a ``temperature`` other than the
#: default (OpenAI platform docs, "Reasoning models").
REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")


class OpenAIChat(RemoteChatProvider["OpenAI"]):
    """Chat Completions through the ``openai`` SDK.

    Errors: 429 (except ``insufficient_quota``), 408, 409, 5xx, timeouts, refused or dropped
    connections, an error event inside the stream -> :class:`ProviderUnavailable`; 400, 401, 403,
    404, 422 and an exhausted quota -> :class:`ProviderRejected`. Messages are redacted (OpenAI's
    401 echoes part of the key).
    """

    name: ClassVar[str] = "openai"
    label: ClassVar[str] = "OpenAI"
    default_model: ClassVar[str | None] = "gpt-4o-mini"
    sdk_modules: ClassVar[tuple[str, ...]] = ("openai",)
    client_module: ClassVar[str] = "openai"
    client_package: ClassVar[str] = "openai"
    api_key_envs: ClassVar[tuple[str, ...]] = ("OPENAI_API_KEY",)
    requires_api_key: ClassVar[bool] = True
    default_base_url: ClassVar[str | None] = "https://api.openai.com/v1"

    @override
    def _client_key(self) -> str | None:
        if self.settings.base_url is not None:
            _, key = self.api_key()
            return key or NO_KEY  # a compatible server without authentication
        return super()._client_key()

    @override
    def _build_client(self, key: str | None) -> OpenAI:
        from openai import OpenAI

        return OpenAI(
            api_key=key,
            base_url=self.base_url,
            timeout=self.settings.request_timeout_s,
            max_retries=0,  # the base class owns retries
        )

    def _request(self, prompt: ChatPrompt, max_tokens: int) -> dict[str, Any]:
        model = self.model or ""
        kwargs: dict[str, Any] = {"model": model, "messages": prompt.messages()}
        if self.settings.base_url is None:
            kwargs["max_completion_tokens"] = max_tokens
        else:
            kwargs["max_tokens"] = max_tokens
        if not model.startswith(REASONING_PREFIXES):
            kwargs["temperature"] = self.settings.temperature
        return kwargs

    @override
    def _complete(self, client: OpenAI, prompt: ChatPrompt, *, max_tokens: int) -> Piece:
        response = client.chat.completions.create(**self._request(prompt, max_tokens))
        choice = response.choices[0] if response.choices else None
        usage = response.usage
        return Piece(
            text=(choice.message.content or "") if choice is not None else "",
            prompt_tokens=usage.prompt_tokens if usage is not None else None,
            completion_tokens=usage.completion_tokens if usage is not None else None,
            finish_reason=(choice.finish_reason if choice is not None else None) or "stop",
        )

    @override
    def _stream(self, client: OpenAI, prompt: ChatPrompt, *, max_tokens: int) -> Iterator[Piece]:
        stream = client.chat.completions.create(
            **self._request(prompt, max_tokens),
            stream=True,
            stream_options={"include_usage": True},
        )
        try:
            for chunk in stream:
                usage = chunk.usage
                text, finish = "", None
                for choice in chunk.choices or []:
                    if choice.index == 0:
                        text = choice.delta.content or "" if choice.delta is not None else ""
                        finish = choice.finish_reason
                yield Piece(
                    text=text,
                    prompt_tokens=usage.prompt_tokens if usage is not None else None,
                    completion_tokens=usage.completion_tokens if usage is not None else None,
                    finish_reason=finish,
                )
        finally:
            stream.close()

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
        if isinstance(exc, openai.APIError):  # an error event inside a stream
            return ProviderUnavailable(
                "openai: the stream reported an error: " + self._redact(str(exc.message))
            )
        return super()._map_error(exc)

    def _status_error(self, exc: Any) -> ProviderUnavailable | ProviderRejected:
        status = int(exc.status_code)
        body = exc.body
        message = body.get("message") if isinstance(body, dict) else None
        code = body.get("code") if isinstance(body, dict) else None
        what = self._status_line(status, message or exc.message, code)
        if status == 429 and code == "insufficient_quota":
            return ProviderRejected(what + " (the account is out of credit)")
        headers = dict(exc.response.headers) if exc.response is not None else None
        return self._http_error(status, what, retry_after_s=parse_retry_after(headers))
