"""The image-provider interface: :class:`ImageEmbeddingProvider` owns what every image provider has
in common — batching, retries with jittered backoff inside a time budget, the dimension check and
cache, L2 normalisation — and a provider implements only the calls that embed one batch of images
(``_embed_images``) and one batch of query texts into the same space (``_embed_texts``), its
limits and its dimension. Hosted providers get their client, key, redaction and error mapping
from :class:`RemoteImageProvider`.

Flow of ``embed_images(pictures)`` (``n`` encoded pictures in, ``n`` x ``dimension`` floats out,
in order)::

    cut into batches of min(batch_size, max_images_per_request)
        ->  per batch: _embed_images, transient errors retried (app/retrying.py)
        ->  count and size checked, each vector L2-normalised

A picture is the bytes of one encoded image (PNG or JPEG) that docvec made itself: the
extraction child scales every page of an image upload down to ``image_embedding.max_side``
pixels and encodes it as PNG (:mod:`app.pipeline.extract.pictures`), so no provider ever decodes
an uploaded file.

Errors are those of the text providers: :class:`~app.errors.ProviderUnavailable` (transient:
429, 5xx, timeouts; ``retry_after_s`` from ``Retry-After``) and
:class:`~app.errors.ProviderRejected` (permanent: 400, 401, 403, 404, bad configuration), their
messages redacted, the SDK's exception dropped (``from None``).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

from typing_extensions import override

from app.config import ImageEmbeddingSettings, read_secret
from app.embeddings.sdk_client import SdkClient
from app.errors import (
    DimensionMismatch,
    ProviderRejected,
    TransientError,
)
from app.retrying import retry_call

ClientT = TypeVar("ClientT")

#: Longest provider message kept in an error (characters), as for the text providers.
MAX_MESSAGE_CHARS = 500


def l2_normalised(vector: Sequence[float]) -> list[float]:
    """``vector`` scaled to length 1 (a zero vector is returned as it is: it has no direction)."""
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0.0 or not math.isfinite(norm):
        return [float(x) for x in vector]
    return [float(x) / norm for x in vector]


class ImageEmbeddingProvider(ABC):
    """One image embedding model: pictures and query texts into one vector space.

    Subclasses set the class attributes below (citing the source of each limit) and implement
    :meth:`_embed_images`, :meth:`_embed_texts` and :meth:`_load_dimension`.

    Transient errors are retried up to ``max_attempts`` tries per batch with jittered exponential
    backoff (or the server's ``Retry-After``, never less) while the waits stay within
    ``retry_budget_s`` (:func:`app.retrying.retry_call`), then re-raised for the task's retry.
    """

    name: ClassVar[str] = ""
    #: The provider as messages name it.
    label: ClassVar[str] = ""
    #: Model used when ``settings.model`` is unset ("" = the provider derives one).
    default_model: ClassVar[str] = ""
    #: Python modules the provider needs (checked by ``docvec providers``).
    sdk_modules: ClassVar[tuple[str, ...]] = ()
    #: The package that installs them, for the message.
    sdk_package: ClassVar[str] = ""
    #: Environment variables tried, in order, for the API key when ``api_key_env`` is unset.
    api_key_envs: ClassVar[tuple[str, ...]] = ()
    requires_api_key: ClassVar[bool] = False
    #: Server used when ``settings.base_url`` is unset; None for in-process providers.
    default_base_url: ClassVar[str | None] = None
    remote: ClassVar[bool] = False
    #: Pictures per request / forward pass the provider accepts (documented limit).
    max_images_per_request: ClassVar[int] = 64
    #: Query texts per request the provider accepts (documented limit).
    max_texts_per_request: ClassVar[int] = 64

    #: First backoff delay, seconds (doubled per retry, with jitter: app/retrying.py).
    backoff_base_s: float = 1.0

    def __init__(self, settings: ImageEmbeddingSettings) -> None:
        self.settings = settings
        self.model: str = self.recorded_model(settings)
        self.batch_size = settings.batch_size
        self._dimension: int | None = None
        self._dimension_lock = threading.Lock()

    @classmethod
    def recorded_model(cls, settings: ImageEmbeddingSettings) -> str:
        """The model name ``settings`` describe, without building the provider: what an index
        version records ("" when none can be named)."""
        return settings.model or cls.default_model

    # ---- what a provider implements -------------------------------------------------------
    @abstractmethod
    def _embed_images(self, pictures: list[bytes]) -> list[list[float]]:
        """Embed one batch of encoded pictures: ``len(pictures)`` x ``dimension``, in order."""

    @abstractmethod
    def _embed_texts(self, texts: list[str]) -> list[list[float]]:
        """Embed one batch of search queries into the pictures' space, in order."""

    @abstractmethod
    def _load_dimension(self) -> int:
        """The model's output dimension (configuration, a documented table, or one probe)."""

    def known_dimension(self) -> int | None:
        """The dimension if known without loading a model or calling a server, else None."""
        return self._dimension if self._dimension is not None else self.settings.dimensions

    # ---- shared behaviour -----------------------------------------------------------------
    @property
    def dimension(self) -> int:
        """Vector size of this model (cached after the first lookup or probe)."""
        if self._dimension is None:
            with self._dimension_lock:
                if self._dimension is None:
                    self._dimension = self._load_dimension()
        return self._dimension

    def embed_images(self, pictures: Sequence[bytes]) -> list[list[float]]:
        """Embed encoded pictures (PNG/JPEG bytes): ``len(pictures)`` x ``dimension``
        L2-normalised floats, in input order.

        Raises:
            ProviderUnavailable: a batch still failed transiently after its retries.
            ProviderRejected / DimensionMismatch: at once, for what retrying cannot fix.
        """
        size = max(1, min(self.batch_size, self.max_images_per_request))
        return self._run(list(pictures), size, self._embed_images, "images")

    def embed_texts(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed search queries into the pictures' space: ``len(texts)`` x ``dimension``
        L2-normalised floats, in input order (same errors as :meth:`embed_images`)."""
        size = max(1, min(self.batch_size, self.max_texts_per_request))
        return self._run(list(texts), size, self._embed_texts, "query texts")

    def embed_query(self, text: str) -> list[float]:
        """One search query in the pictures' space: ``dimension`` floats."""
        return self.embed_texts([text])[0]

    def _run(
        self,
        items: list[Any],
        size: int,
        call: Callable[[list[Any]], list[list[float]]],
        what: str,
    ) -> list[list[float]]:
        out: list[list[float]] = []
        for start in range(0, len(items), size):
            batch = items[start : start + size]
            vectors = retry_call(
                functools.partial(call, batch),
                is_transient=lambda exc: isinstance(exc, TransientError),
                attempts=self.settings.max_attempts,
                budget_s=self.settings.retry_budget_s,
                base_s=self.backoff_base_s,
                what=f"{self.name} image model: embedding {len(batch)} {what}",
            )
            out.extend(self._check(vectors, len(batch)))
        return out

    def _check(self, vectors: list[list[float]], n: int) -> list[list[float]]:
        """Count and size as promised (the first answer fixes an unknown dimension), then each
        vector L2-normalised."""
        if len(vectors) != n:
            raise ProviderRejected(
                f"{self.name} image model {self.model} returned {len(vectors)} vectors for {n} "
                "inputs"
            )
        expected = self._dimension or self.known_dimension()
        if expected is None and vectors:
            expected = self._dimension = len(vectors[0])
        for vector in vectors:
            if len(vector) != expected:
                raise DimensionMismatch(
                    f"{self.name} image model {self.model} returned {len(vector)}-dim vectors, "
                    f"expected {expected} (check DOCVEC_IMAGE_EMBEDDING__DIMENSIONS and the model)"
                )
        return [l2_normalised(v) for v in vectors]

    # ---- keys ---------------------------------------------------------------------------------
    def api_key_names(self) -> tuple[str, ...]:
        """Environment variables holding the API key, in the order they are tried."""
        return (self.settings.api_key_env,) if self.settings.api_key_env else self.api_key_envs

    def api_key(self) -> tuple[str, str] | tuple[None, None]:
        """``(variable name, key)`` of the first variable that holds a key, else
        ``(None, None)``; read when needed (:func:`app.config.read_secret`), never stored."""
        for name in self.api_key_names():
            value = read_secret(name)
            if value:
                return name, value
        return None, None

    @property
    def base_url(self) -> str | None:
        """The server this provider talks to, if any."""
        return self.settings.base_url or self.default_base_url

    # ---- status -------------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """What stops this provider before any request: a missing SDK, a missing key (and, for
        the local model, a missing or incomplete model folder)."""
        found: list[str] = []
        for module in self.sdk_modules:
            try:
                missing = importlib.util.find_spec(module) is None
            except ModuleNotFoundError:
                missing = True
            if missing:
                found.append(
                    f"SDK not installed: python module {module!r} cannot be imported"
                    + (f" (pip install {self.sdk_package})" if self.sdk_package else "")
                )
        if self.requires_api_key and self.api_key()[0] is None:
            found.append("no API key: set " + " or ".join(self.api_key_names()))
        return found

    def probe(self) -> int:
        """One query text, one try: proves the model answers; returns (and caches) its size."""
        return len(self._check(self._embed_texts(["docvec status probe"]), 1)[0])

    def limits(self) -> dict[str, Any]:
        """Limits in force."""
        return {
            "batch_size": self.batch_size,
            "max_images_per_request": self.max_images_per_request,
            "max_texts_per_request": self.max_texts_per_request,
            "max_side": self.settings.max_side,
            "max_attempts": self.settings.max_attempts,
            "retry_budget_s": self.settings.retry_budget_s,
            "request_timeout_s": self.settings.request_timeout_s if self.remote else None,
        }

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the provider holds open (a hosted provider's HTTP connections)."""


class RemoteImageProvider(SdkClient[ClientT], ImageEmbeddingProvider):
    """A hosted image provider reached through its SDK's client ``ClientT``: built lazily on
    first use (after a Celery prefork, never at import) under a lock; the key read by variable
    name then and used for redaction; errors mapped in one context manager — all of it
    :class:`~app.embeddings.sdk_client.SdkClient`, shared with the text and chat providers."""

    remote: ClassVar[bool] = True
    family: ClassVar[str] = "image provider"

    def __init__(self, settings: ImageEmbeddingSettings) -> None:
        super().__init__(settings)
        self._init_client()

    @override
    def _install_hint(self) -> str:
        return self.sdk_package

    @property
    @override
    def _subject(self) -> str:
        return f"{self.name} image model"

    @override
    def _rejection_hint(self, status: int) -> str:
        if status in (401, 403):
            return " (check the key in " + " or ".join(self.api_key_names()) + ")"
        if status == 404:
            return f" (is {self.model!r} an image embedding model of {self.label}?)"
        return ""
