"""What the remote providers (``openai``, ``ollama``, ``gemini``) share, written once:
:class:`RemoteProvider`, between :class:`~app.embeddings.base.EmbeddingProvider` and them.

- **The client**, built lazily on first use — after a Celery prefork, never at import — once per
  provider instance, under a lock for the API's threads; the SDK is imported only then, so a
  missing SDK makes the provider unavailable instead of breaking imports.
- **The key**, read by variable name at that moment (:meth:`EmbeddingProvider.api_key`), kept
  only in the client and for :meth:`RemoteProvider._redact`, which takes it (and anything shaped
  like a key) out of every message.
- **The dimension**: ``DOCVEC_EMBEDDING__DIMENSIONS``, else the provider's documented table
  (:meth:`RemoteProvider.documented_dimension`), else one probe request.
- **Error mapping**, in one context manager around the SDK call (after httpx's
  ``map_httpcore_exceptions``, ``httpx/_transports/default.py``)::

      with self._mapped_errors():        any exception of the SDK call
          sdk call                       -> _map_error(exc): the provider's HTTP error type
                                            -> _status_error -> _http_error:
                                               transient status  -> ProviderUnavailable
                                                                    (retry_after_s)
                                               other status      -> ProviderRejected (+ hint)
                                         -> a network error (is_network_error)
                                               -> ProviderUnavailable
                                         -> anything else: raised unchanged

  Mapped errors are raised ``from None``: the SDK's exception may carry the key or the request.

A provider implements ``_build_client(key)``, ``_embed_batch`` (the call inside
``_mapped_errors``), ``_map_error`` for its SDK's error type, and its limits and tables.
"""

from __future__ import annotations

import importlib
import threading
from abc import abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

from typing_extensions import override

from app.config import EmbeddingSettings
from app.embeddings.base import EmbeddingProvider
from app.embeddings.http_helpers import is_network_error, redact, transient_status
from app.errors import DocvecError, ProviderRejected, ProviderUnavailable

if TYPE_CHECKING:
    import tiktoken

ClientT = TypeVar("ClientT")

#: Longest provider message kept in an error (characters): enough for the reason, bounded so that
#: an echoed request body cannot flood a log line or the attempt row.
MAX_MESSAGE_CHARS = 500


@lru_cache(maxsize=8)
def tiktoken_encoding(name: str) -> tiktoken.Encoding:
    """The tiktoken encoding ``name``, loaded once per process (``cl100k_base`` ships with
    docvec; others need tiktoken's file, offline via TIKTOKEN_CACHE_DIR: :mod:`app.tokens`).

    Raises:
        ValueError: the encoding could not be loaded.
    """
    from app.tokens import get_encoding

    return get_encoding(name)


class RemoteProvider(EmbeddingProvider, Generic[ClientT]):
    """A provider behind a server, reached through its SDK's client ``ClientT``."""

    remote: ClassVar[bool] = True
    default_concurrency: ClassVar[int] = 4
    #: Module imported before the client is built, and the package that installs it.
    client_module: ClassVar[str] = ""
    client_package: ClassVar[str] = ""
    #: The provider as messages name it ("OpenAI needs an API key").
    label: ClassVar[str] = ""

    def __init__(self, settings: EmbeddingSettings) -> None:
        super().__init__(settings)
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
                        f"{self.name} provider unavailable: pip install {self.client_package}"
                    ) from None
                key = self._client_key()
                self._key = key
                self._client_obj = self._build_client(key)
            return self._client_obj

    @abstractmethod
    def _build_client(self, key: str | None) -> ClientT:
        """The SDK's client for ``base_url`` with ``key``, its own retries off (the base class owns
        them) and ``request_timeout_s`` as its timeout."""

    @override
    def close(self) -> None:
        with self._client_lock:
            client, self._client_obj = self._client_obj, None
        if client is not None:
            self._close_client(client)

    def _close_client(self, client: ClientT) -> None:
        """Close the SDK's client (its HTTP connection pool); each SDK spells it its own way."""
        close = getattr(client, "close", None)
        if callable(close):
            close()

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
        return f"{self.label} needs an API key: set " + " or ".join(self.api_key_names())

    def _redact(self, text: str) -> str:
        """``text`` without the key in use or anything shaped like a key."""
        return redact(text, [self._key])

    # ---- dimension -----------------------------------------------------------------------------
    def documented_dimension(self) -> int | None:
        """The model's native dimension from the provider's documented table, None if unlisted."""
        return None

    @override
    def known_dimension(self) -> int | None:
        if self._dimension is not None:
            return self._dimension
        if self.settings.dimensions is not None:
            return self.settings.dimensions
        return self.documented_dimension()

    @override
    def _load_dimension(self) -> int:
        return self.known_dimension() or self._probe_dimension()

    # ---- errors --------------------------------------------------------------------------------
    @contextmanager
    def _mapped_errors(self) -> Iterator[None]:
        """Raise what the SDK call raises as the error tree's class (see the module docstring);
        what is neither an HTTP nor a network error passes unchanged."""
        try:
            yield
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
        return f"{self.name}: cannot reach {self.base_url}: " + self._redact(
            f"{type(exc).__name__}: {exc}"
        )

    def _status_line(self, status: int, message: object, code: object = None) -> str:
        """``"<name>: HTTP <status> [<code>][: <message>]"``, the message redacted and cut to
        :data:`MAX_MESSAGE_CHARS`."""
        text = self._redact(str(message or "")).strip()[:MAX_MESSAGE_CHARS]
        what = f"{self.name}: HTTP {status}" + (f" {code}" if code else "")
        return what + (f": {text}" if text else "")

    def _http_error(
        self,
        status: int,
        what: str,
        *,
        retry_after_s: Callable[[], float | None],
        transient: bool | None = None,
    ) -> ProviderUnavailable | ProviderRejected:
        """An HTTP error answer as the error tree's class.

        Args:
            status: the HTTP status.
            what: the message (already redacted).
            retry_after_s: reads the server's wait in seconds; called only for transient errors.
            transient: overrides :func:`~app.embeddings.http_helpers.transient_status`.
        """
        if transient is None:
            transient = transient_status(status)
        if transient:
            return ProviderUnavailable(what, retry_after_s=retry_after_s())
        return ProviderRejected(what + self._rejection_hint(status))

    def _rejection_hint(self, status: int) -> str:
        """What to check, appended to a permanent error with this status ("" if nothing)."""
        return ""
