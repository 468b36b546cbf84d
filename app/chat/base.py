"""The chat interface: :class:`ChatProvider` answers one :class:`ChatPrompt`, whole
(:meth:`~ChatProvider.complete`) or as an iterator of text deltas (:meth:`~ChatProvider.stream`),
and counts what it spent in a :class:`ChatUsage`.

:class:`RemoteChatProvider` owns what every model behind a server shares, written once — the same
shape as the embedding providers' ``app/embeddings/remote.py``, with its helpers reused:

- **the client**, built lazily on first use (the SDK imported only then) under a lock, once per
  provider instance; **the key**, read by the NAME of its variable when the client is built
  (:func:`app.config.read_secret`), kept only in the client and for redaction;
- **limits**: the RPM/TPM token bucket of :mod:`app.embeddings.ratelimit`, shared by the threads
  of a process, charged with the prompt's tokens plus ``max_answer_tokens``;
- **retries**: a transient error (429, 408, 5xx, timeouts, refused or reset connections) before
  the first piece of text is retried with the jittered backoff of :mod:`app.retrying`, never
  earlier than a ``Retry-After`` asks, at most ``max_attempts`` tries within ``retry_budget_s``
  of waiting (a longer ``Retry-After`` fails at once: someone is waiting for the answer). Once
  text has been handed out a failure is not retried — the caller already holds part of an answer
  that a second generation would not continue — and is raised as it is;
- **errors**, mapped in one place (:meth:`RemoteChatProvider._mapped_errors`) onto the error tree:
  :class:`~app.errors.ProviderUnavailable` (transient, with ``retry_after_s``) or
  :class:`~app.errors.ProviderRejected` (400, 401, 403, 404), messages redacted and raised
  ``from None`` (an SDK's exception may carry the key or the request);
- **a stream that stops midway** — the connection dropped, a malformed piece, or the end of the
  body before the model said it had finished — is :class:`~app.errors.ProviderUnavailable`, never
  a silent, shortened answer; a stalled stream ends after ``request_timeout_s`` of silence (the
  SDKs' read timeout), never hangs.

A provider implements ``_build_client(key)``, ``_complete`` and ``_stream`` (its SDK's
non-streamed and streamed calls) and ``_map_error`` for its SDK's error types.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal, TypeVar

from typing_extensions import override

from app.config import ChatSettings, read_secret
from app.embeddings.ratelimit import RateLimiter
from app.embeddings.sdk_client import SdkClient
from app.errors import ProviderUnavailable, TransientError
from app.retrying import backoff_delay

log = logging.getLogger(__name__)

ClientT = TypeVar("ClientT")

#: Answer tokens a status probe asks for: enough for any model to say one word.
PROBE_MAX_TOKENS = 16
Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class PromptSource:
    """One numbered source as the prompt holds it: ``[n]`` in an answer names it."""

    n: int
    text: str
    file_name: str
    page: int | None
    chunk_index: int


@dataclass(frozen=True, slots=True)
class ChatPrompt:
    """What a provider answers: the system instructions, the user message (the delimited sources
    and the question, rendered by :mod:`app.answers.prompt`), and the same parts structured for
    providers that read them directly (``extractive``).

    ``tokens``: the prompt's size in cl100k_base tokens (an estimate for non-OpenAI models),
    charged to the tokens-per-minute limit.
    """

    system: str
    user: str
    question: str
    sources: tuple[PromptSource, ...] = ()
    tokens: int = 0

    def messages(self) -> list[dict[str, str]]:
        """The Chat Completions / ``/api/chat`` messages: ``[{"role", "content"}, ...]``."""
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.user}]


@dataclass
class ChatUsage:
    """What answering one prompt cost: tokens as the provider reported them (None when it did
    not), HTTP requests sent and retries among them, and why the model stopped (``stop``,
    ``length``, ...)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    requests: int = 0
    retries: int = 0
    finish_reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Piece:
    """One item a provider's call yields: text (possibly empty) and, when the provider says so,
    the tokens used and the reason the model stopped (its last piece carries them)."""

    text: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None


class ChatProvider(ABC):
    """One chat provider and model.

    Subclasses set the class attributes below and implement :meth:`complete` and
    :meth:`stream`; remote ones derive from :class:`RemoteChatProvider` instead, which implements
    both around the SDK calls.
    """

    name: ClassVar[str] = ""
    #: The provider as messages name it ("OpenAI needs an API key").
    label: ClassVar[str] = ""
    #: Model used when ``settings.model`` is unset (None: no model at all).
    default_model: ClassVar[str | None] = None
    #: Python modules the provider needs (checked by ``docvec providers``).
    sdk_modules: ClassVar[tuple[str, ...]] = ()
    #: Environment variables tried, in order, for the API key when ``api_key_env`` is unset.
    api_key_envs: ClassVar[tuple[str, ...]] = ()
    #: True when no request can succeed without a key (hosted APIs).
    requires_api_key: ClassVar[bool] = False
    #: Server used when ``settings.base_url`` is unset; None for in-process providers.
    default_base_url: ClassVar[str | None] = None
    #: True when answering needs a server (probed by ``docvec providers``).
    remote: ClassVar[bool] = False
    #: False when no language model writes the answer (``extractive``).
    generative: ClassVar[bool] = True

    def __init__(self, settings: ChatSettings) -> None:
        self.settings = settings
        self.model: str | None = settings.model or self.default_model

    @property
    def base_url(self) -> str | None:
        """The server this provider talks to, if any."""
        return (self.settings.base_url or self.default_base_url) if self.remote else None

    def api_key_names(self) -> tuple[str, ...]:
        """Environment variables holding the API key, in the order they are tried."""
        return (self.settings.api_key_env,) if self.settings.api_key_env else self.api_key_envs

    def api_key(self) -> tuple[str, str] | tuple[None, None]:
        """``(variable name, key)`` of the first variable holding a key, else ``(None, None)``;
        read when needed, never stored in the settings or logged."""
        for name in self.api_key_names():
            value = read_secret(name)
            if value:
                return name, value
        return None, None

    @abstractmethod
    def complete(self, prompt: ChatPrompt, *, usage: ChatUsage | None = None) -> str:
        """The whole answer to ``prompt`` in one call.

        Raises:
            ProviderUnavailable: transient failure after the retries (``retry_after_s`` set when
                the server asked to wait).
            ProviderRejected: what retrying cannot fix (bad key, unknown model, 400).
        """

    @abstractmethod
    def stream(self, prompt: ChatPrompt, *, usage: ChatUsage | None = None) -> Iterator[str]:
        """The answer as it is written: text deltas, in order; ``usage`` is complete when the
        iterator is exhausted. Closing the iterator early closes the provider's stream.

        Raises (while iterating): as :meth:`complete`; a stream that breaks after text was
        yielded raises :class:`ProviderUnavailable` without a retry.
        """

    def close(self) -> None:
        """Release what the provider holds open (HTTP connections); it stays usable."""
        return

    def problems(self) -> list[str]:
        """What stops this provider before any request: a missing SDK or a missing API key."""
        found: list[str] = []
        for module in self.sdk_modules:
            try:
                missing = importlib.util.find_spec(module) is None
            except ModuleNotFoundError:
                missing = True
            if missing:
                found.append(f"SDK not installed: python module {module!r} cannot be imported")
        if self.requires_api_key and self.api_key()[0] is None:
            found.append("no API key: set " + " or ".join(self.api_key_names()))
        return found

    def probe(self) -> None:
        """One tiny request, one try: proves the server answers and the model exists.

        Raises the mapped provider errors; a provider without a server has nothing to probe.
        """
        return

    def limits(self) -> dict[str, Any]:
        """Limits in force (for ``docvec providers`` and ``GET /status``)."""
        s = self.settings
        return {
            "context_window_tokens": s.context_window_tokens,
            "max_answer_tokens": s.max_answer_tokens,
            "temperature": s.temperature if self.generative else None,
            "requests_per_minute": s.requests_per_minute if self.remote else None,
            "tokens_per_minute": s.tokens_per_minute if self.remote else None,
            "max_attempts": s.max_attempts if self.remote else None,
            "retry_budget_s": s.retry_budget_s if self.remote else None,
            "request_timeout_s": s.request_timeout_s if self.remote else None,
        }


class RemoteChatProvider(SdkClient[ClientT], ChatProvider):
    """A chat model behind a server, reached through its SDK's client ``ClientT`` (client, key,
    redaction and error mapping: :class:`~app.embeddings.sdk_client.SdkClient`)."""

    remote: ClassVar[bool] = True
    family: ClassVar[str] = "chat provider"
    key_env_setting: ClassVar[str] = "DOCVEC_CHAT__API_KEY_ENV"
    #: First backoff delay (seconds) and its cap; each retry doubles it, times [0.5, 1).
    backoff_base_s: float = 0.5
    backoff_max_s: float = 4.0

    def __init__(self, settings: ChatSettings) -> None:
        super().__init__(settings)
        self.limiter = RateLimiter(settings.requests_per_minute, settings.tokens_per_minute)
        self._init_client()
        #: Seconds slept between tries: injectable for tests of the waiting itself.
        self.sleep: Callable[[float], None] = time.sleep

    # ---- what a provider implements (and _build_client, _map_error: SdkClient) ---------------
    @abstractmethod
    def _complete(self, client: ClientT, prompt: ChatPrompt, *, max_tokens: int) -> Piece:
        """One non-streamed request of at most ``max_tokens`` answer tokens: the whole answer
        with its usage and finish reason."""

    @abstractmethod
    def _stream(self, client: ClientT, prompt: ChatPrompt, *, max_tokens: int) -> Iterator[Piece]:
        """One streamed request of at most ``max_tokens`` answer tokens: its pieces in order,
        the last with the finish reason. Closing the iterator must close the HTTP response."""

    # ---- shared --------------------------------------------------------------------------------
    @override
    def _rejection_hint(self, status: int) -> str:
        """What to check, appended to a permanent error with this status."""
        if status == 401:
            return " (check the key in " + " or ".join(self.api_key_names()) + ")"
        if status == 404:
            return f" (is the model {self.model!r} served at {self.base_url}?)"
        return ""

    def _cost(self, prompt: ChatPrompt) -> int:
        """Tokens one request is charged against the tokens-per-minute limit."""
        return prompt.tokens + self.settings.max_answer_tokens

    def _tries(self, usage: ChatUsage, prompt: ChatPrompt, call: Callable[[], Any]) -> Any:
        """``call()`` through the limiter, retrying transient errors (see the module docstring).

        Raises:
            ProviderUnavailable: the last transient error, when tries or budget are spent (its
                message says how many tries); at once when Retry-After asks for more time than
                the budget has left.
            ProviderRejected: at once.
        """
        waited = 0.0
        attempt = 0
        while True:
            self.limiter.acquire(self._cost(prompt))
            attempt += 1
            usage.requests += 1
            try:
                with self._mapped_errors():
                    return call()
            except TransientError as exc:
                retry_after = exc.retry_after_s
                if retry_after is not None:
                    self.limiter.pause(retry_after)
                delay = backoff_delay(
                    attempt,
                    base_s=self.backoff_base_s,
                    cap_s=self.backoff_max_s,
                    retry_after_s=retry_after,
                )
                if attempt >= self.settings.max_attempts or waited + delay > (
                    self.settings.retry_budget_s
                ):
                    asked = f"; the server asked to wait {retry_after:g} s" if retry_after else ""
                    raise ProviderUnavailable(
                        f"{exc.message} (gave up after {attempt} tries{asked})",
                        retry_after_s=retry_after,
                    ) from None
                log.warning(
                    "%s: %s; try %d of %d in %.1fs",
                    self.name,
                    exc.message,
                    attempt + 1,
                    self.settings.max_attempts,
                    delay,
                )
                usage.retries += 1
                self.sleep(delay)
                waited += delay

    @staticmethod
    def _record(usage: ChatUsage, piece: Piece) -> None:
        if piece.prompt_tokens is not None:
            usage.prompt_tokens = piece.prompt_tokens
        if piece.completion_tokens is not None:
            usage.completion_tokens = piece.completion_tokens
        if piece.finish_reason is not None:
            usage.finish_reason = piece.finish_reason

    @override
    def complete(self, prompt: ChatPrompt, *, usage: ChatUsage | None = None) -> str:
        usage = usage if usage is not None else ChatUsage()
        client = self._client()
        limit = self.settings.max_answer_tokens
        piece: Piece = self._tries(
            usage, prompt, lambda: self._complete(client, prompt, max_tokens=limit)
        )
        self._record(usage, piece)
        return piece.text

    @override
    def stream(self, prompt: ChatPrompt, *, usage: ChatUsage | None = None) -> Iterator[str]:
        usage = usage if usage is not None else ChatUsage()
        client = self._client()

        def open_stream() -> tuple[Iterator[Piece], Piece | None]:
            # The request up to its first text (or its end): what fails here is retried, as
            # nothing was handed out yet. Pieces without text (a role, a keep-alive) pass.
            pieces = self._stream(client, prompt, max_tokens=self.settings.max_answer_tokens)
            try:
                while True:
                    piece = next(pieces, None)
                    if piece is None or piece.text or piece.finish_reason is not None:
                        return pieces, piece
                    self._record(usage, piece)
            except BaseException:
                close_iterator(pieces)
                raise

        pieces, first = self._tries(usage, prompt, open_stream)
        finished = False
        chars = 0
        try:
            piece = first
            while piece is not None:
                self._record(usage, piece)
                finished = finished or piece.finish_reason is not None
                if piece.text:
                    chars += len(piece.text)
                    yield piece.text
                try:
                    with self._mapped_errors():
                        piece = next(pieces, None)
                except ProviderUnavailable as exc:
                    if finished:  # the answer is whole; only a trailer (usage, [DONE]) is lost
                        log.warning("%s: %s after the answer finished", self.name, exc.message)
                        break
                    # Not retried: part of the answer is out (see the module docstring).
                    raise ProviderUnavailable(
                        f"{self.name}: the stream broke after {chars} characters: {exc.message}",
                        retry_after_s=exc.retry_after_s,
                    ) from None
        finally:
            close_iterator(pieces)
        if not finished:
            raise ProviderUnavailable(
                f"{self.name}: the stream ended before the model finished its answer "
                f"(after {chars} characters)"
            )

    @override
    def probe(self) -> None:
        tiny = ChatPrompt(system="Reply with one word.", user="ping", question="ping", tokens=8)
        with self._mapped_errors():
            self._complete(self._client(), tiny, max_tokens=PROBE_MAX_TOKENS)


def close_iterator(iterator: Iterator[Any]) -> None:
    """Close a generator (or anything with ``close``); plain iterators have nothing to close."""
    close = getattr(iterator, "close", None)
    if callable(close):
        close()
