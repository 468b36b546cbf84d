"""The ``gemini`` chat provider: the Gemini Developer API through Google's ``google-genai`` SDK —
``client.models.generate_content`` (``POST /v1beta/models/{model}:generateContent``) and
``generate_content_stream`` (``:streamGenerateContent?alt=sse``, one ``GenerateContentResponse``
per Server-Sent Event, the last candidate with its ``finishReason``).

The system prompt goes in ``system_instruction``, the delimited sources and the question as the
user's content; ``max_output_tokens`` is ``max_answer_tokens`` (on thinking models such as
gemini-2.5-flash the model's thoughts count against it too: Gemini API docs, "Thinking").
Thought parts are never part of the answer. The SDK's own retries are off (no
``retry_options``): the base class owns them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from typing_extensions import override

from app.chat.base import ChatPrompt, Piece, RemoteChatProvider, close_iterator
from app.embeddings.http_helpers import google_retry_delay, parse_retry_after
from app.errors import DocvecError, ProviderRejected, ProviderUnavailable

if TYPE_CHECKING:
    from google.genai import Client

#: Gemini's finish reasons in the words of the other providers (``STOP`` -> ``stop``).
_FINISH = {"STOP": "stop", "MAX_TOKENS": "length"}


class GeminiChat(RemoteChatProvider["Client"]):
    """Answers from Gemini through ``google-genai``.

    Errors (``google.genai.errors.APIError``): 429 (``Retry-After`` or the ``RetryInfo``
    detail), 408 and 5xx -> :class:`ProviderUnavailable`; 400 (an invalid key included), 401,
    403, 404, a prompt blocked by the safety filters -> :class:`ProviderRejected`; timeouts and
    dropped connections -> :class:`ProviderUnavailable`.
    """

    name: ClassVar[str] = "gemini"
    label: ClassVar[str] = "Gemini"
    default_model: ClassVar[str | None] = "gemini-2.5-flash"
    sdk_modules: ClassVar[tuple[str, ...]] = ("google.genai",)
    client_module: ClassVar[str] = "google.genai"
    client_package: ClassVar[str] = "google-genai"
    #: The google-genai SDK's own order: GOOGLE_API_KEY wins when both are set.
    api_key_envs: ClassVar[tuple[str, ...]] = ("GOOGLE_API_KEY", "GEMINI_API_KEY")
    requires_api_key: ClassVar[bool] = True
    default_base_url: ClassVar[str | None] = "https://generativelanguage.googleapis.com"
    #: API version of the Gemini Developer API serving generateContent.
    api_version: ClassVar[str] = "v1beta"

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

    def _config(self, prompt: ChatPrompt, max_tokens: int) -> Any:
        from google.genai import types

        return types.GenerateContentConfig(
            system_instruction=prompt.system,
            temperature=self.settings.temperature,
            max_output_tokens=max_tokens,
        )

    def _piece(self, response: Any) -> Piece:
        """One response (or stream chunk) as a piece: its text parts, tokens, finish reason."""
        feedback = response.prompt_feedback
        if not response.candidates and feedback is not None and feedback.block_reason:
            raise ProviderRejected(
                f"gemini: the prompt was blocked ({_name(feedback.block_reason)})"
            )
        text, finish = "", None
        if response.candidates:
            candidate = response.candidates[0]
            content = candidate.content
            parts = (content.parts if content is not None else None) or []
            text = "".join(p.text for p in parts if p.text and not p.thought)
            if candidate.finish_reason is not None:
                reason = _name(candidate.finish_reason)
                finish = _FINISH.get(reason, reason.lower())
        meta = response.usage_metadata
        return Piece(
            text=text,
            prompt_tokens=meta.prompt_token_count if meta is not None else None,
            completion_tokens=meta.candidates_token_count if meta is not None else None,
            finish_reason=finish,
        )

    @override
    def _complete(self, client: Client, prompt: ChatPrompt, *, max_tokens: int) -> Piece:
        response = client.models.generate_content(
            model=self.model or "", contents=prompt.user, config=self._config(prompt, max_tokens)
        )
        piece = self._piece(response)
        # A whole answer is finished by definition; the reason says how.
        return Piece(
            piece.text, piece.prompt_tokens, piece.completion_tokens, piece.finish_reason or "stop"
        )

    @override
    def _stream(self, client: Client, prompt: ChatPrompt, *, max_tokens: int) -> Iterator[Piece]:
        chunks = client.models.generate_content_stream(
            model=self.model or "", contents=prompt.user, config=self._config(prompt, max_tokens)
        )
        try:
            for chunk in chunks:
                yield self._piece(chunk)
        finally:
            close_iterator(chunks)

    @override
    def _map_error(self, exc: Exception) -> DocvecError | None:
        from google.genai import errors

        if isinstance(exc, errors.APIError):
            status = int(exc.code or 0)
            what = self._status_line(status, exc.message, exc.status)
            response = getattr(exc, "response", None)
            headers = dict(response.headers) if response is not None else None
            wait = parse_retry_after(headers)
            if wait is None:
                wait = google_retry_delay(exc.details)
            return self._http_error(status, what, retry_after_s=wait)
        if isinstance(exc, json.JSONDecodeError):
            # The SDK parses each event's JSON: a stream cut inside one ends here.
            return ProviderUnavailable(f"gemini: {self.base_url} sent a malformed stream event")
        return super()._map_error(exc)

    @override
    def _rejection_hint(self, status: int) -> str:
        if status == 404:
            return f" (is {self.model!r} a generative model of the Gemini API?)"
        return super()._rejection_hint(status)


def _name(value: Any) -> str:
    """An SDK enum's name (``FinishReason.STOP`` -> ``"STOP"``), or the string itself."""
    return str(getattr(value, "value", value))
