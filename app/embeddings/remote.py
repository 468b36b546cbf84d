"""What the remote embedding providers (``openai``, ``ollama``, ``gemini``) share, written once:
:class:`RemoteProvider`, between :class:`~app.embeddings.base.EmbeddingProvider` and them.

- **The client, the key and the error mapping** come from
  :class:`~app.embeddings.sdk_client.SdkClient`, which the chat and image providers share too: the
  client built lazily under a lock, the key read by variable name and redacted from every message,
  one context manager mapping the SDK's errors onto the error tree (transient →
  ``ProviderUnavailable`` with ``retry_after_s``, permanent → ``ProviderRejected`` with a hint,
  network → ``ProviderUnavailable``).
- **The dimension**: ``DOCVEC_EMBEDDING__DIMENSIONS``, else the provider's documented table
  (:meth:`RemoteProvider.documented_dimension`), else one probe request.

A provider implements ``_build_client(key)``, ``_embed_batch`` (the call inside
``_mapped_errors``), ``_map_error`` for its SDK's error type, and its limits and tables.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, ClassVar, TypeVar

from typing_extensions import override

from app.config import EmbeddingSettings
from app.embeddings.base import EmbeddingProvider
from app.embeddings.sdk_client import MAX_MESSAGE_CHARS, SdkClient

if TYPE_CHECKING:
    import tiktoken

ClientT = TypeVar("ClientT")

__all__ = ["MAX_MESSAGE_CHARS", "RemoteProvider", "tiktoken_encoding"]


@lru_cache(maxsize=8)
def tiktoken_encoding(name: str) -> tiktoken.Encoding:
    """The tiktoken encoding ``name``, loaded once per process (``cl100k_base`` ships with
    docvec; others need tiktoken's file, offline via TIKTOKEN_CACHE_DIR: :mod:`app.tokens`).

    Raises:
        ValueError: the encoding could not be loaded.
    """
    from app.tokens import get_encoding

    return get_encoding(name)


class RemoteProvider(SdkClient[ClientT], EmbeddingProvider):
    """A provider behind a server, reached through its SDK's client ``ClientT``."""

    remote: ClassVar[bool] = True
    default_concurrency: ClassVar[int] = 4
    #: The provider as messages name it ("OpenAI needs an API key").
    label: ClassVar[str] = ""

    def __init__(self, settings: EmbeddingSettings) -> None:
        super().__init__(settings)
        self._init_client()

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
