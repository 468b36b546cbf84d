"""The provider interface: :class:`EmbeddingProvider` owns what every provider has in common — the
over-long input policy, batching, bounded concurrency, client-side rate limits, retries with
jittered backoff inside a time budget, usage counters and the dimension cache — and a provider
implements only the call that embeds one batch (``_embed_batch``), its limits and its dimension
table. Remote providers get their client, key, redaction and error mapping from ``remote.py``.

Flow of ``embed_matrix(texts)`` (``n`` texts in, one ``n`` x ``dimension`` float32 matrix out,
row ``i`` the vector of ``texts[i]``)::

    prefix (prefixes.py)  ->  fit to max_input_tokens (truncate, counted)
        ->  cut batches by count and tokens (batching.py)
        ->  up to max_concurrency batches in flight (threads)  ->  per batch:
            rate limiter (ratelimit.py)  ->  _embed_batch  ->  retry transient errors
            ->  checked and made float32 (the SDK's lists of floats are dropped here)
        ->  copied into the rows of one preallocated matrix; counters in EmbeddingUsage (usage.py)

Vectors travel as float32 :data:`Vectors` from here to the vector store (app/pipeline/reuse.py,
app/vectorstore/): a 384-dim vector takes 1.5 KiB so, against ~12 KiB as a list of Python floats
(a pointer and a 24-byte float object per value). :meth:`EmbeddingProvider.embed_documents` gives
the same vectors as lists, for callers that want plain Python values.

Errors: a provider raises :class:`app.errors.ProviderUnavailable` (transient: 429, 5xx, 408,
timeouts, connection resets; ``retry_after_s`` from ``Retry-After``) or
:class:`app.errors.ProviderRejected` (permanent: 400, 401, 403, 404, bad configuration). Messages
pass through :func:`app.embeddings.http_helpers.redact` and the SDK's own exception is dropped
(``from None``): SDK messages may echo the key or the request, and a chained exception ends up in
tracebacks and logs.

Capabilities: what only some providers can do is asked of the provider, never decided from its
name elsewhere — :meth:`EmbeddingProvider.tokenizer_file` (the model's own tokenizer, for chunks
sized in model tokens) and :meth:`EmbeddingProvider.reference_encoder` (the model run by its
reference implementation, for evaluation).
"""

from __future__ import annotations

import importlib.util
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeAlias

import numpy as np
from numpy.typing import NDArray

from app import metrics
from app.config import EmbeddingSettings, read_secret
from app.embeddings.batching import batch_indices
from app.embeddings.prefixes import model_prefixes
from app.embeddings.ratelimit import RateLimiter
from app.embeddings.usage import EmbeddingUsage
from app.errors import DimensionMismatch, ProviderRejected, TransientError
from app.retrying import backoff_delay

log = logging.getLogger(__name__)

InputKind = Literal["document", "query"]

#: Longest wait a ``Retry-After`` may impose inside one call; longer ones go to the task's retry.
MAX_RETRY_AFTER_S = 300.0

#: Vectors as docvec holds them: a C-contiguous float32 matrix of shape ``(n, dimension)``, row
#: ``i`` the vector of input ``i``. A row (shape ``(dimension,)``) is one vector.
Vectors: TypeAlias = NDArray[np.float32]
#: What a provider's ``_embed_batch`` may give for ``n`` inputs: :data:`Vectors`, or the SDK's
#: ``n`` lists of ``dimension`` floats (checked and made float32 by the base, once per batch).
RawVectors: TypeAlias = Vectors | Sequence[Sequence[float]]

#: Texts in, one L2-normalised float32 row per text out (``len(texts)`` x ``dimension``).
Encode: TypeAlias = Callable[[list[str]], "np.ndarray"]


@dataclass(frozen=True, slots=True)
class Embedded:
    """What ``_embed_batch`` may return instead of bare vectors: the vectors (``n`` x ``dim``, in
    input order: :data:`Vectors` or the SDK's lists) and the tokens the provider reported for the
    request, if it did."""

    vectors: RawVectors
    tokens: int | None = None
    #: Positions (in the batch) of inputs the model truncated to its window on its own side,
    #: for providers that cannot be asked to refuse them (the local model).
    truncated: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class _Batch:
    start: int
    end: int


class _Cancelled(Exception):
    """Internal: another batch of the same call failed; this one stops."""


class EmbeddingProvider(ABC):
    """One embedding provider and model.

    Subclasses set the class attributes below (citing the source of each limit) and implement
    :meth:`_embed_batch` and :meth:`_load_dimension`; remote ones also
    :meth:`model_max_input_tokens`, :meth:`count_tokens` and :meth:`truncate` where they know
    better than ~4 characters per token.

    Transient errors are retried up to ``max_attempts`` tries per batch with jittered exponential
    backoff (or the server's ``Retry-After``, never less), as long as the next try starts within
    ``retry_budget_s`` of the first — well under the task's soft time limit (validated by the
    settings) — then re-raised so the task-level retry with long backoff takes over. Permanent
    errors are raised at once, and the first error of a call cancels its other batches.
    """

    name: ClassVar[str] = ""
    #: Model used when ``settings.model`` is unset.
    default_model: ClassVar[str] = ""
    #: Python modules the provider needs (checked by ``docvec providers``).
    sdk_modules: ClassVar[tuple[str, ...]] = ()
    #: Environment variables tried, in order, for the API key when ``api_key_env`` is unset.
    api_key_envs: ClassVar[tuple[str, ...]] = ()
    #: True when no request can succeed without a key (hosted APIs).
    requires_api_key: ClassVar[bool] = False
    #: Server used when ``settings.base_url`` is unset; None for in-process providers.
    default_base_url: ClassVar[str | None] = None
    #: True when embedding needs a server (reachability is probed by ``docvec providers``).
    remote: ClassVar[bool] = False
    #: Batches in flight per process when ``max_concurrency`` is unset.
    default_concurrency: ClassVar[int] = 1
    #: Inputs per request the provider accepts (documented limit).
    max_inputs_per_request: ClassVar[int] = 2048
    #: Tokens per request (summed over its inputs) the provider accepts, if it documents one.
    max_tokens_per_request: ClassVar[int | None] = None
    #: What happens to an input longer than the model's context (shown by ``docvec providers``).
    overlong_policy: ClassVar[str] = "truncated by the model to its maximum sequence length"
    #: True when a call's inputs are sent longest first (by token count, then characters), so
    #: each batch holds inputs of about one length: for engines that pad a batch to its longest
    #: input and pay for the padding (the local model), as sentence-transformers' own ``encode``
    #: does. The vectors still come back in input order. Remote providers keep the input order.
    sort_by_length: ClassVar[bool] = False

    #: First backoff delay (seconds) and its cap; each retry doubles it, times a factor in
    #: [0.5, 1] ("equal jitter") so that workers hit by the same outage do not retry in step.
    backoff_base_s: float = 1.0
    backoff_max_s: float = 30.0

    def __init__(self, settings: EmbeddingSettings) -> None:
        self.settings = settings
        self.model: str = settings.model or self.default_model
        self.batch_size: int = max(1, min(settings.batch_size, self.max_inputs_per_request))
        self.max_concurrency: int = settings.max_concurrency or self.default_concurrency
        self.retry_attempts: int = settings.max_attempts
        self.retry_budget_s: float = settings.retry_budget_s
        self.max_input_tokens: int | None = (
            settings.max_input_tokens or self.model_max_input_tokens()
        )
        doc_prefix, query_prefix = model_prefixes(self.model)
        self.document_prefix: str = (
            settings.document_prefix if settings.document_prefix is not None else doc_prefix
        )
        self.query_prefix: str = (
            settings.query_prefix if settings.query_prefix is not None else query_prefix
        )
        self.limiter = RateLimiter(settings.requests_per_minute, settings.tokens_per_minute)
        self._dimension: int | None = None
        self._dimension_lock = threading.Lock()
        self._usage_lock = threading.Lock()

    # ---- what a provider implements -------------------------------------------------------
    @abstractmethod
    def _embed_batch(self, texts: list[str], *, kind: InputKind) -> RawVectors | Embedded:
        """Embed one batch that respects the limits: ``len(texts)`` x ``dimension`` floats in
        input order, as a float32 matrix or the SDK's lists (optionally wrapped in
        :class:`Embedded` with the reported tokens)."""

    @abstractmethod
    def _load_dimension(self) -> int:
        """The model's output dimension (from a documented table, else one probe call)."""

    def known_dimension(self) -> int | None:
        """The dimension if known without loading a model or calling a server, else None."""
        return self._dimension

    def model_max_input_tokens(self) -> int | None:
        """The model's documented input limit in tokens, None if unknown (server decides)."""
        return None

    def count_tokens(self, text: str) -> int:
        """Approximate tokens of ``text`` for batch cutting; ~4 characters per token by default."""
        return max(1, len(text) // 4)

    def truncate(self, text: str, max_tokens: int) -> str:
        """``text`` cut to at most ``max_tokens`` tokens (by default 4 characters per token)."""
        return text[: max_tokens * 4]

    def api_key_names(self) -> tuple[str, ...]:
        """Environment variables holding the API key, in the order they are tried."""
        return (self.settings.api_key_env,) if self.settings.api_key_env else self.api_key_envs

    def api_key(self) -> tuple[str, str] | tuple[None, None]:
        """``(variable name, key)`` of the first variable that holds a key, else ``(None, None)``.

        The key is read at the moment it is needed (:func:`app.config.read_secret`), never stored
        in the settings, never logged.
        """
        for name in self.api_key_names():
            value = read_secret(name)
            if value:
                return name, value
        return None, None

    @property
    def base_url(self) -> str | None:
        """The server this provider talks to, if any."""
        return self.settings.base_url or self.default_base_url

    # ---- capabilities: what only some providers can do ----------------------------------------
    @classmethod
    def tokenizer_file(cls, settings: EmbeddingSettings, *, chunk_size: int) -> Path:
        """The model's Hugging Face ``tokenizer.json``, for chunks sized in the model's own tokens
        (``DOCVEC_CHUNKING__UNIT=model_tokens``), found without loading the model.

        A class method, resolved from the settings (see :func:`app.embeddings.tokenizer_file`):
        the composition root asks for it at construction, before any provider is built.

        Raises:
            ValueError: this provider has no tokenizer on this machine (the default), the model
                folder has none, or ``chunk_size`` model tokens do not fit the model's window.
        """
        raise ValueError(
            "DOCVEC_CHUNKING__UNIT=model_tokens sizes chunks with the local model's tokenizer; "
            f"provider {settings.provider!r} has none here: use unit=tokens (tiktoken)"
        )

    def reference_encoder(self, *, batch_size: int) -> Encode | None:
        """The model run by its reference implementation, bypassing docvec's prefixes, batching,
        limits and retries: texts in, ``len(texts)`` x ``dimension`` L2-normalised float32 out,
        ``batch_size`` texts per forward pass. Evaluation compares docvec's pipeline against it.

        None (the default) when the model runs only behind the provider's own API; callers then
        embed through :meth:`embed_documents` / :meth:`embed_query`. Loading may take seconds.
        """
        return None

    # ---- shared behaviour -----------------------------------------------------------------
    @property
    def dimension(self) -> int:
        """Vector size produced by this provider/model (cached after the first lookup or probe)."""
        if self._dimension is None:
            with self._dimension_lock:
                if self._dimension is None:
                    self._dimension = self._load_dimension()
        return self._dimension

    def _probe_dimension(self) -> int:
        """One real request (with the usual retries) to learn the dimension of an unknown model."""
        vectors = self._call(["dimension probe"], [3], kind="query", usage=None, cancel=None)
        return int(vectors.shape[1])

    def batches(self, texts: Sequence[str]) -> Iterator[tuple[int, int]]:
        """Cut ``texts`` into ``[start, end)`` index ranges by count and by tokens (see
        :meth:`cut`), counting tokens with :meth:`count_tokens`."""
        return self.cut([self.count_tokens(t) for t in texts])

    def cut(self, token_counts: Sequence[int]) -> Iterator[tuple[int, int]]:
        """Cut inputs with these token counts into ``[start, end)`` index ranges: at most
        ``batch_size`` inputs and, if the provider has a token limit per request, at most
        ``max_tokens_per_request`` tokens each (:func:`~app.embeddings.batching.batch_indices`).
        """
        return batch_indices(
            token_counts, batch_size=self.batch_size, max_tokens=self.max_tokens_per_request
        )

    def fit(self, texts: Sequence[str]) -> tuple[list[str], list[int], list[int]]:
        """Apply the over-long policy: ``(texts, token counts, positions of truncated inputs)``.

        An input over ``max_input_tokens`` is cut to it (:meth:`truncate`), never sent to fail;
        with no known limit the text goes as is and the server applies its own policy.
        """
        limit = self.max_input_tokens
        out: list[str] = []
        counts: list[int] = []
        truncated: list[int] = []
        for i, text in enumerate(texts):
            n = self.count_tokens(text)
            if limit is not None and n > limit:
                text = self.truncate(text, limit)
                n = self.count_tokens(text)
                truncated.append(i)
            out.append(text)
            counts.append(n)
        if truncated:
            log.warning(
                "%s: %d input(s) longer than %d tokens truncated (model %s)",
                self.name,
                len(truncated),
                limit,
                self.model,
            )
        return out, counts, truncated

    def embed_documents(
        self,
        texts: Sequence[str],
        *,
        usage: EmbeddingUsage | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[list[float]]:
        """Embed document chunks: ``len(texts)`` lists of ``dimension`` Python floats, in input
        order — :meth:`embed_matrix`'s float32 values as lists, for callers that want plain
        values (the pipeline keeps the matrix: a list costs ~8x its memory).

        Raises:
            as :meth:`embed_matrix`.
        """
        rows: list[list[float]] = self.embed_matrix(texts, usage=usage, on_batch=on_batch).tolist()
        return rows

    def embed_matrix(
        self,
        texts: Sequence[str],
        *,
        usage: EmbeddingUsage | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> Vectors:
        """Embed document chunks: a float32 matrix of shape ``(len(texts), dimension)``, row ``i``
        the vector of ``texts[i]``. No text: shape ``(0, d)``, ``d`` the dimension if known
        without a call (:meth:`known_dimension`), else 0.

        Up to ``max_concurrency`` batches are in flight at once; ``on_batch(n)`` is called (in the
        calling thread) after each batch of ``n`` inputs completes, in completion order. Each
        batch's vectors are copied into the matrix as it completes, so no list of Python floats
        outlives its batch. With :attr:`sort_by_length` the batches are cut from the inputs
        ordered longest first (a stable sort), and each batch's rows go back to their inputs'
        places.

        Raises:
            ProviderUnavailable: a batch still failed transiently after its in-call retries.
            ProviderRejected / DimensionMismatch: at once, for what retrying cannot fix.
        """
        if not texts:
            return np.empty((0, self.known_dimension() or 0), dtype=np.float32)
        usage = usage if usage is not None else EmbeddingUsage()
        prefixed = [self.document_prefix + t for t in texts] if self.document_prefix else texts
        fitted, counts, truncated = self.fit(prefixed)
        base = usage.inputs  # positions in truncated_inputs count from the call's first input
        usage.truncated_inputs.extend(base + i for i in truncated)
        usage.truncated += len(truncated)
        # rows[j]: the input (and output row) of the j-th text sent; None: in input order.
        rows: list[int] | None = None
        if self.sort_by_length and len(fitted) > 1:
            # Tokens, then characters: the token counts are estimates (~4 characters each).
            rows = sorted(
                range(len(fitted)), key=lambda i: (counts[i], len(fitted[i])), reverse=True
            )
            fitted = [fitted[i] for i in rows]
            counts = [counts[i] for i in rows]
        ranges = [_Batch(start, end) for start, end in self.cut(counts)]
        # Allocated when the first batch tells the width (every batch has it: _check).
        out: Vectors | None = None
        filled = 0

        def run(batch: _Batch, cancel: threading.Event | None) -> Vectors:
            return self._call(
                fitted[batch.start : batch.end],
                counts[batch.start : batch.end],
                kind="document",
                usage=usage,
                cancel=cancel,
                offset=base + batch.start,
                positions=None
                if rows is None
                else [base + i for i in rows[batch.start : batch.end]],
            )

        def done(batch: _Batch, vectors: Vectors) -> None:
            nonlocal out, filled
            if out is None:
                out = np.empty((len(fitted), vectors.shape[1]), dtype=np.float32)
            if rows is None:
                out[batch.start : batch.end] = vectors
            else:
                out[rows[batch.start : batch.end]] = vectors
            filled += batch.end - batch.start
            if on_batch is not None:
                on_batch(batch.end - batch.start)

        workers = min(self.max_concurrency, len(ranges))
        if workers <= 1:
            for batch in ranges:
                done(batch, run(batch, None))
        else:
            self._run_concurrently(ranges, workers, run, done)
        assert out is not None and filled == len(fitted)
        return out

    def _run_concurrently(
        self,
        ranges: list[_Batch],
        workers: int,
        run: Callable[[_Batch, threading.Event | None], Vectors],
        done: Callable[[_Batch, Vectors], None],
    ) -> None:
        cancel = threading.Event()
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"embed-{self.name}")
        futures: dict[Future[Vectors], _Batch] = {
            pool.submit(run, batch, cancel): batch for batch in ranges
        }
        failed = True
        try:
            pending = set(futures)
            while pending:
                # A short timeout keeps the calling thread responsive to signals (Celery's soft
                # time limit is raised in it).
                finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in finished:
                    done(futures[future], future.result())
            failed = False
        finally:
            if failed:
                cancel.set()  # batches in flight stop before their next try
            pool.shutdown(wait=not failed, cancel_futures=True)

    def embed_query(self, text: str) -> list[float]:
        """Embed one search query (asymmetric models get their query task type or prefix):
        ``dimension`` Python floats (the float32 values)."""
        fitted, counts, _ = self.fit([self.query_prefix + text])
        rows = self._call(fitted, counts, kind="query", usage=None, cancel=None)
        vector: list[float] = rows[0].tolist()
        return vector

    def _retry_delay(self, attempt: int, retry_after_s: float | None) -> float:
        # The same delays as the pipeline's store-write retries (app/retrying.py).
        return backoff_delay(
            attempt,
            base_s=self.backoff_base_s,
            cap_s=self.backoff_max_s,
            retry_after_s=retry_after_s,
        )

    def _call(
        self,
        batch: list[str],
        counts: list[int],
        *,
        kind: InputKind,
        usage: EmbeddingUsage | None,
        cancel: threading.Event | None,
        offset: int = 0,
        positions: Sequence[int] | None = None,
    ) -> Vectors:
        """One batch through the limiter, with in-call retries: a ``len(batch)`` x ``dimension``
        float32 matrix.

        ``offset`` is the batch's first position in ``usage.truncated_inputs``' numbering;
        ``positions``, if given, the position of each of its inputs there (a sorted call's).
        """
        started = time.monotonic()
        deadline = started + self.retry_budget_s
        tokens = sum(counts)
        attempt = 0
        while True:
            self.limiter.acquire(tokens, cancel)
            if cancel is not None and cancel.is_set():
                raise _Cancelled
            attempt += 1
            if usage is not None:
                with self._usage_lock:
                    usage.requests += 1
            t0 = time.perf_counter()
            try:
                result = self._embed_batch(batch, kind=kind)
            except TransientError as exc:
                retry_after = exc.retry_after_s
                if retry_after is not None and retry_after <= MAX_RETRY_AFTER_S:
                    self.limiter.pause(retry_after)
                delay = self._retry_delay(attempt, retry_after)
                too_long = retry_after is not None and retry_after > MAX_RETRY_AFTER_S
                if (
                    attempt >= self.retry_attempts
                    or too_long
                    or time.monotonic() + delay > deadline
                    or (cancel is not None and cancel.is_set())
                ):
                    elapsed = time.monotonic() - started
                    raise type(exc)(
                        f"{exc.message} (gave up after {attempt} tries in {elapsed:.1f}s)",
                        stage=exc.stage,
                        retry_after_s=retry_after,
                    ) from None
                log.warning(
                    "%s: %s; try %d of %d in %.1fs",
                    self.name,
                    exc.message,
                    attempt + 1,
                    self.retry_attempts,
                    delay,
                )
                metrics.EMBED_PROVIDER_RETRIES.labels(self.name).inc()
                if usage is not None:
                    with self._usage_lock:
                        usage.retries += 1
                if cancel is not None and cancel.wait(delay):
                    raise _Cancelled from None
                if cancel is None:
                    time.sleep(delay)
                continue
            metrics.EMBED_BATCH_SECONDS.labels(self.name).observe(time.perf_counter() - t0)
            metrics.EMBED_BATCH_SIZE.labels(self.name).observe(len(batch))
            embedded = result if isinstance(result, Embedded) else Embedded(result)
            vectors = self._check(embedded.vectors, len(batch))
            if usage is not None:
                with self._usage_lock:
                    usage.inputs += len(batch)
                    usage.batch_sizes.append(len(batch))
                    if embedded.tokens is not None:
                        usage.tokens = (usage.tokens or 0) + embedded.tokens
                    usage.truncated += len(embedded.truncated)
                    usage.truncated_inputs.extend(
                        positions[i] if positions is not None else offset + i
                        for i in embedded.truncated
                    )
            return vectors

    def _check(self, vectors: RawVectors, n: int) -> Vectors:
        """Vectors count and size as promised, as a float32 ``n`` x ``dimension`` matrix; the
        first answer fixes an unknown dimension.

        Raises:
            ProviderRejected: another number of vectors than inputs, or values that are not
                numbers.
            DimensionMismatch: a vector of another size than the model's.
        """
        if isinstance(vectors, np.ndarray) and vectors.ndim != 2:
            raise ProviderRejected(
                f"{self.name} returned an array of shape {vectors.shape} for {n} inputs "
                f"(model {self.model})"
            )
        if len(vectors) != n:
            raise ProviderRejected(
                f"{self.name} returned {len(vectors)} vectors for {n} inputs (model {self.model})"
            )
        sizes = (
            [int(vectors.shape[1])]
            if isinstance(vectors, np.ndarray)
            else [len(vector) for vector in vectors]
        )
        expected = self._dimension
        if expected is None:
            expected = self.known_dimension() or (sizes[0] if sizes else None)
            if expected is not None:
                self._dimension = expected
        for size in sizes:
            if size != expected:
                raise DimensionMismatch(
                    f"{self.name} model {self.model} returned {size}-dim vectors, expected "
                    f"{expected} (check DOCVEC_EMBEDDING__DIMENSIONS and the model name)"
                )
        try:
            # No copy when the provider already gave float32 (the local model).
            return np.ascontiguousarray(vectors, dtype=np.float32).reshape(n, expected or 0)
        except (TypeError, ValueError):
            raise ProviderRejected(
                f"{self.name} returned vectors that are not numbers (model {self.model})"
            ) from None

    # ---- status -------------------------------------------------------------------------------
    def close(self) -> None:
        """Release what the provider holds open (a remote provider's HTTP connections). The
        provider can be used again afterwards: a client is built anew on the next call."""
        return  # a local model holds no connection

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

    def probe(self) -> int:
        """One request, one try, no limiter: proves the server answers and the model works.

        Returns the dimension it produced (and caches it). Raises the mapped provider errors.
        """
        result = self._embed_batch(["docvec status probe"], kind="query")
        embedded = result if isinstance(result, Embedded) else Embedded(result)
        return int(self._check(embedded.vectors, 1).shape[1])

    def limits(self) -> dict[str, Any]:
        """Limits in force (documented caps and configured client-side limits)."""
        return {
            "batch_size": self.batch_size,
            "max_inputs_per_request": self.max_inputs_per_request,
            "max_tokens_per_request": self.max_tokens_per_request,
            "max_input_tokens": self.max_input_tokens,
            "overlong_inputs": self.overlong_policy,
            "max_concurrency": self.max_concurrency,
            "requests_per_minute": self.limiter.requests_per_minute,
            "tokens_per_minute": self.limiter.tokens_per_minute,
            "max_attempts": self.retry_attempts,
            "retry_budget_s": self.retry_budget_s,
            "request_timeout_s": self.settings.request_timeout_s if self.remote else None,
        }

    def describe(self) -> dict[str, object]:
        """Model, dimension and limits in force (for ``docvec providers`` and ``/status``)."""
        return {
            "provider": self.name,
            "model": self.model,
            "dimension": self.dimension,
            "base_url": self.base_url,
            "document_prefix": self.document_prefix,
            "query_prefix": self.query_prefix,
            **self.limits(),
        }
