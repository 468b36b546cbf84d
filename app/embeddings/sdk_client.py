"""The client half of every remote provider, written once: :class:`SdkClient`.

Three families of providers talk to servers through their SDKs — text embeddings
(:class:`app.embeddings.remote.RemoteProvider`), chat models
(:class:`app.chat.base.RemoteChatProvider`) and image embeddings
(:class:`app.embeddings.images.base.RemoteImageProvider`). What they share is here (STYLE §9:
one layer for clients, keys, redaction and error mapping):

- **the client**, built lazily on first use — after a Celery prefork, never at import — once per
  provider instance, under a lock for the API's threads; the SDK module is imported only then, so a
  missing SDK makes the provider unavailable (:class:`~app.errors.ProviderRejected` naming the
  package) instead of breaking imports;
- **the key**, read by variable name at that moment (the host's ``api_key()``), kept only in the
  client and for :meth:`SdkClient._redact`, which takes it (and anything shaped like a key) out of
  every message;
- **error mapping**, in one context manager around the SDK call (after httpx's
  ``map_httpcore_exceptions``, ``httpx/_transports/default.py``): the provider's ``_map_error``
  turns its SDK's HTTP error into :meth:`SdkClient._http_error` (a transient status →
  :class:`~app.errors.ProviderUnavailable` with the server's wait, another →
  :class:`~app.errors.ProviderRejected` with a hint), a network error →
  ``ProviderUnavailable``; anything else passes unchanged. Mapped errors are raised ``from None``:
  the SDK's exception may carry the key or the request.

The host class (a provider base of one family) supplies ``name``, ``label``, ``requires_api_key``,
``base_url``, ``api_key()`` and ``api_key_names()``; a provider implements ``_build_client(key)``
and ``_map_error`` for its SDK's error type.
"""

from __future__ import annotations

import importlib
import threading
from abc import abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

from app.embeddings.http_helpers import is_network_error, redact, transient_status
from app.errors import DocvecError, ProviderRejected, ProviderUnavailable

ClientT = TypeVar("ClientT")

#: Longest provider message kept in an error (characters): enough for the reason, bounded so that
#: an echoed request body cannot flood a log line or the attempt row.
MAX_MESSAGE_CHARS = 500

#: A server's wait before the next try, in seconds: known, unknown (None), or read on demand.
RetryAfter = float | None | Callable[[], float | None]


class SdkClient(Generic[ClientT]):
    """The SDK client ``ClientT`` of one remote provider, its key and its error mapping.

    Mixed in before the family's provider base (``class RemoteProvider(SdkClient[C],
    EmbeddingProvider)``), whose ``__init__`` must call :meth:`_init_client`.
    """

    #: Module imported before the client is built, and the package that installs it.
    client_module: ClassVar[str] = ""
    client_package: ClassVar[str] = ""
    #: What messages call this kind of provider ("openai chat provider unavailable: ...").
    family: ClassVar[str] = "provider"
    #: The setting that names another key variable, added to the missing-key message ("" none).
    key_env_setting: ClassVar[str] = ""

    # Supplied by the family's provider base, which comes after this class in the bases: declared
    # for the type checker only, so that nothing here shadows the base's own at run time.
    name: ClassVar[str]
    label: ClassVar[str]
    requires_api_key: ClassVar[bool]
    if TYPE_CHECKING:

        @property
        def base_url(self) -> str | None: ...

        def api_key(self) -> tuple[str, str] | tuple[None, None]: ...

        def api_key_names(self) -> tuple[str, ...]: ...

    def _init_client(self) -> None:
        self._client_obj: ClientT | None = None
        self._client_lock = threading.Lock()
        self._key: str | None = None

    # ---- the client ----------------------------------------------------------------------------
    def _client(self) -> ClientT:
        """The SDK client, built on first use.

        Raises:
            ProviderRejected: the SDK is not installed, or a required key is missing.
        """
        with self._client_lock:
            if self._client_obj is None:
                try:
                    importlib.import_module(self.client_module)
                except ImportError:
                    raise ProviderRejected(
                        f"{self.name} {self.family} unavailable: pip install {self._install_hint()}"
                    ) from None
                key = self._client_key()
                self._key = key
                self._client_obj = self._build_client(key)
            return self._client_obj

    @abstractmethod
    def _build_client(self, key: str | None) -> ClientT:
        """The SDK's client for ``base_url`` with ``key``, its own retries off (the provider base
        owns them) and the configured request timeout."""

    def close(self) -> None:
        """Release the client's HTTP connections; the provider stays usable (a new client is
        built on the next call)."""
        with self._client_lock:
            client, self._client_obj = self._client_obj, None
        if client is not None:
            self._close_client(client)

    def _close_client(self, client: ClientT) -> None:
        """Close the SDK's client (its connection pool); each SDK spells it its own way."""
        close = getattr(client, "close", None)
        if callable(close):
            close()

    def _install_hint(self) -> str:
        """What ``pip install`` needs for :attr:`client_module`."""
        return self.client_package

    def _client_key(self) -> str | None:
        """The key the client is built with.

        Raises:
            ProviderRejected: none is set and the provider requires one.
        """
        _, key = self.api_key()
        if key is None and self.requires_api_key:
            raise ProviderRejected(self._missing_key_message())
        return key

    def _missing_key_message(self) -> str:
        message = f"{self.label} needs an API key: set " + " or ".join(self.api_key_names())
        if self.key_env_setting:
            message += f" ({self.key_env_setting} names another variable)"
        return message

    def _redact(self, text: str) -> str:
        """``text`` without the key in use or anything shaped like a key."""
        return redact(text, [self._key])

    # ---- errors --------------------------------------------------------------------------------
    @property
    def _subject(self) -> str:
        """Who messages say failed: the provider's name (image providers: "<name> image model")."""
        return self.name

    @contextmanager
    def _mapped_errors(self) -> Iterator[None]:
        """Raise what the SDK call raises as the error tree's class (see the module docstring);
        the error tree's own classes and what is neither an HTTP nor a network error pass
        unchanged."""
        try:
            yield
        except DocvecError:
            raise
        except Exception as exc:
            mapped = self._map_error(exc)
            if mapped is None:
                raise
            raise mapped from None

    def _map_error(self, exc: Exception) -> DocvecError | None:
        """``exc`` as a provider error, None to let it pass. Providers handle their SDK's HTTP
        error type first, then defer here for network errors."""
        if is_network_error(exc):
            return ProviderUnavailable(self._network_message(exc))
        return None

    def _network_message(self, exc: BaseException) -> str:
        return f"{self._subject}: cannot reach {self.base_url}: " + self._redact(
            f"{type(exc).__name__}: {exc}"
        )

    def _status_line(self, status: int, message: object, code: object = None) -> str:
        """``"<subject>: HTTP <status> [<code>][: <message>]"``, the message redacted and cut to
        :data:`MAX_MESSAGE_CHARS`."""
        text = self._redact(str(message or "")).strip()[:MAX_MESSAGE_CHARS]
        what = f"{self._subject}: HTTP {status}" + (f" {code}" if code else "")
        return what + (f": {text}" if text else "")

    def _http_error(
        self,
        status: int,
        what: str,
        *,
        retry_after_s: RetryAfter = None,
        transient: bool | None = None,
    ) -> ProviderUnavailable | ProviderRejected:
        """An HTTP error answer as the error tree's class.

        Args:
            status: the HTTP status.
            what: the message (already redacted: :meth:`_status_line`).
            retry_after_s: the server's wait in seconds, or a function reading it (called only
                for a transient error).
            transient: overrides :func:`~app.embeddings.http_helpers.transient_status` (429,
                408 and 5xx).
        """
        if transient is None:
            transient = transient_status(status)
        if transient:
            wait = retry_after_s() if callable(retry_after_s) else retry_after_s
            return ProviderUnavailable(what, retry_after_s=wait)
        return ProviderRejected(what + self._rejection_hint(status))

    def _rejection_hint(self, status: int) -> str:
        """What to check, appended to a permanent error with this status ("" if nothing)."""
        return ""
