"""The provider base class: batch cutting, over-long inputs, prefixes, the rate limiter, header
parsing, redaction, and retry/concurrency behaviour through a small in-memory provider.

The HTTP providers are tested through their real SDKs in the sibling modules; here an in-memory
subclass (the documented extension point, not a mock) drives the shared machinery directly.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.config import EmbeddingSettings, Settings
from app.embeddings import PROVIDERS, create_provider, provider_class
from app.embeddings.base import Embedded, EmbeddingProvider, InputKind
from app.embeddings.http_helpers import parse_duration, parse_retry_after, redact
from app.embeddings.prefixes import model_prefixes
from app.embeddings.ratelimit import RateLimiter
from app.embeddings.usage import EmbeddingUsage
from app.errors import DimensionMismatch, ProviderRejected, ProviderUnavailable


class Scripted(EmbeddingProvider):
    """In memory: vector ``[len(text), index-in-batch]``; ``failures`` scripts errors per call."""

    name = "scripted"
    default_model = "scripted-1"
    max_tokens_per_request = 100
    default_concurrency = 1
    backoff_base_s = 0.01

    def __init__(self, settings: EmbeddingSettings, failures: list[Exception] | None = None):
        super().__init__(settings)
        self.failures = list(failures or [])
        self.calls: list[list[str]] = []
        self.lock = threading.Lock()
        self.delay_s = 0.0

    def _embed_batch(self, texts: list[str], *, kind: InputKind) -> Embedded:
        with self.lock:
            self.calls.append(list(texts))
            fail = self.failures.pop(0) if self.failures else None
        if self.delay_s:
            time.sleep(self.delay_s)
        if fail is not None:
            raise fail
        return Embedded([[float(len(t)), 1.0] for t in texts], tokens=len(texts))

    def _load_dimension(self) -> int:
        return 2


def settings(**kw: object) -> EmbeddingSettings:
    return EmbeddingSettings(**kw)  # type: ignore[arg-type]


# ---- batch cutting ------------------------------------------------------------------------------
@given(
    counts=st.lists(st.integers(min_value=1, max_value=150), max_size=60),
    batch_size=st.integers(min_value=1, max_value=10),
)
def test_cut_respects_count_and_tokens_and_keeps_order(counts: list[int], batch_size: int) -> None:
    p = Scripted(settings(batch_size=batch_size))
    ranges = list(p.cut(counts))
    assert [i for s, e in ranges for i in range(s, e)] == list(range(len(counts)))
    for s, e in ranges:
        assert 1 <= e - s <= batch_size
        # Over the token limit only when one input alone is over it.
        assert sum(counts[s:e]) <= 100 or e - s == 1


def test_cut_examples() -> None:
    p = Scripted(settings(batch_size=3))
    assert list(p.cut([10] * 7)) == [(0, 3), (3, 6), (6, 7)]
    assert list(p.cut([60, 50, 40, 150, 1])) == [(0, 1), (1, 3), (3, 4), (4, 5)]
    assert list(p.cut([])) == []


def test_batch_size_is_capped_at_the_documented_limit() -> None:
    gemini = provider_class("gemini")(settings(provider="gemini", batch_size=4096))
    assert gemini.batch_size == 100
    openai = provider_class("openai")(settings(provider="openai", batch_size=4096))
    assert openai.batch_size == 2048


# ---- over-long inputs and prefixes --------------------------------------------------------------
def test_overlong_inputs_are_truncated_and_counted() -> None:
    p = Scripted(settings(max_input_tokens=5))
    usage = EmbeddingUsage()
    vectors = p.embed_documents(["a" * 100, "short"], usage=usage)
    assert p.calls == [["a" * 20, "short"]]  # 5 tokens x 4 characters
    assert vectors == [[20.0, 1.0], [5.0, 1.0]]
    assert usage.truncated == 1 and usage.inputs == 2 and usage.tokens == 2


@pytest.mark.parametrize(
    ("model", "doc", "query"),
    [
        ("nomic-embed-text", "search_document: ", "search_query: "),
        ("nomic-embed-text:v1.5", "search_document: ", "search_query: "),
        ("nomic-ai/nomic-embed-text-v1.5", "search_document: ", "search_query: "),
        ("mxbai-embed-large", "", "Represent this sentence for searching relevant passages: "),
        ("intfloat/multilingual-e5-large", "passage: ", "query: "),
        ("text-embedding-3-small", "", ""),
        ("all-MiniLM-L6-v2", "", ""),
    ],
)
def test_documented_prefixes(model: str, doc: str, query: str) -> None:
    assert model_prefixes(model) == (doc, query)


def test_prefixes_are_applied_and_can_be_overridden() -> None:
    p = Scripted(settings(model="nomic-embed-text"))
    p.embed_documents(["chunk"])
    p.embed_query("question")
    assert p.calls == [["search_document: chunk"], ["search_query: question"]]
    q = Scripted(settings(model="nomic-embed-text", document_prefix="", query_prefix="Q: "))
    q.embed_documents(["chunk"])
    q.embed_query("question")
    assert q.calls == [["chunk"], ["Q: question"]]


# ---- retries ------------------------------------------------------------------------------------
def test_transient_errors_are_retried_and_counted() -> None:
    p = Scripted(settings(), failures=[ProviderUnavailable("boom"), ProviderUnavailable("boom")])
    usage = EmbeddingUsage()
    assert p.embed_documents(["x"], usage=usage) == [[1.0, 1.0]]
    assert usage.requests == 3 and usage.retries == 2 and usage.inputs == 1


def test_retries_stop_after_max_attempts_with_a_transient_error() -> None:
    p = Scripted(settings(max_attempts=3), failures=[ProviderUnavailable("down")] * 5)
    usage = EmbeddingUsage()
    with pytest.raises(ProviderUnavailable, match=r"down \(gave up after 3 tries"):
        p.embed_documents(["x"], usage=usage)
    assert len(p.calls) == 3 and usage.retries == 2 and usage.requests == 3


def test_retries_stop_at_the_time_budget() -> None:
    p = Scripted(
        settings(retry_budget_s=0.5), failures=[ProviderUnavailable("slow", retry_after_s=2)]
    )
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable) as caught:
        p.embed_documents(["x"])
    assert time.monotonic() - started < 1.5 and len(p.calls) == 1
    assert caught.value.retry_after_s == 2  # handed to the task-level retry


def test_permanent_errors_are_not_retried() -> None:
    p = Scripted(settings(), failures=[ProviderRejected("bad key")])
    with pytest.raises(ProviderRejected, match="bad key"):
        p.embed_documents(["x"])
    assert len(p.calls) == 1


def test_retry_after_is_honoured_and_pauses_the_other_threads() -> None:
    p = Scripted(
        settings(max_concurrency=3, batch_size=1),
        failures=[ProviderUnavailable("429", retry_after_s=1.0)],
    )
    started = time.monotonic()
    vectors = p.embed_documents(["a", "bb", "ccc"])
    assert vectors == [[1.0, 1.0], [2.0, 1.0], [3.0, 1.0]]
    assert time.monotonic() - started >= 1.0
    assert len(p.calls) == 4


def test_retry_budget_plus_timeout_must_stay_below_the_soft_time_limit() -> None:
    with pytest.raises(ValueError, match="task_soft_time_limit_s"):
        Settings(  # type: ignore[call-arg]
            _env_file=None,
            task_soft_time_limit_s=100,
            task_time_limit_s=200,
            extract_timeout_s=10,
            embedding=settings(retry_budget_s=60, request_timeout_s=60),
        )
    ok = Settings(  # type: ignore[call-arg]
        _env_file=None,
        task_soft_time_limit_s=200,
        task_time_limit_s=300,
        extract_timeout_s=10,
        embedding=settings(retry_budget_s=60, request_timeout_s=60),
    )
    assert ok.embedding.retry_budget_s == 60


# ---- concurrency --------------------------------------------------------------------------------
def test_concurrent_batches_keep_input_order_and_the_bound() -> None:
    p = Scripted(settings(max_concurrency=3, batch_size=2))
    p.delay_s = 0.05
    active = 0
    peak = 0
    guard = threading.Lock()
    inner = p._embed_batch

    def counting(texts: list[str], *, kind: InputKind) -> Embedded:
        nonlocal active, peak
        with guard:
            active += 1
            peak = max(peak, active)
        try:
            return inner(texts, kind=kind)
        finally:
            with guard:
                active -= 1

    p._embed_batch = counting  # type: ignore[method-assign]
    texts = ["x" * n for n in range(1, 21)]
    done: list[int] = []
    vectors = p.embed_documents(texts, on_batch=done.append)
    assert [v[0] for v in vectors] == [float(n) for n in range(1, 21)]
    assert sum(done) == 20 and 2 <= peak <= 3


def test_first_failure_cancels_the_other_batches() -> None:
    p = Scripted(settings(max_concurrency=2, batch_size=1), failures=[ProviderRejected("no")])
    p.delay_s = 0.05
    with pytest.raises(ProviderRejected):
        p.embed_documents([str(i) for i in range(50)])
    assert len(p.calls) < 10


def test_wrong_vector_count_or_size_is_permanent() -> None:
    class Short(Scripted):
        def _embed_batch(self, texts: list[str], *, kind: InputKind) -> Embedded:
            return Embedded([[1.0, 2.0]])

    with pytest.raises(ProviderRejected, match="1 vectors for 2 inputs"):
        Short(settings()).embed_documents(["a", "b"])

    class Wide(Scripted):
        def _embed_batch(self, texts: list[str], *, kind: InputKind) -> Embedded:
            return Embedded([[1.0, 2.0, 3.0] for _ in texts])

    wide = Wide(settings())
    assert wide.dimension == 2
    with pytest.raises(DimensionMismatch, match="3-dim vectors, expected 2"):
        wide.embed_documents(["a"])


def test_embed_matrix_is_one_float32_matrix_in_input_order() -> None:
    p = Scripted(settings(batch_size=3, max_concurrency=2))
    texts = ["x" * n for n in range(1, 11)]
    matrix = p.embed_matrix(texts)
    assert matrix.dtype == np.float32 and matrix.shape == (10, 2) and matrix.flags.c_contiguous
    assert matrix[:, 0].tolist() == [float(n) for n in range(1, 11)]
    # The list form is the same values, as Python floats.
    assert p.embed_documents(texts) == matrix.tolist()
    empty = p.embed_matrix([])
    assert empty.shape == (0, 2) and empty.dtype == np.float32


def test_float32_from_the_provider_is_kept_without_a_copy() -> None:
    held: list[np.ndarray] = []

    class Arrays(Scripted):
        def _embed_batch(self, texts: list[str], *, kind: InputKind) -> Embedded:
            rows = np.array([[float(len(t)), 1.0] for t in texts], dtype=np.float32)
            held.append(rows)
            return Embedded(rows)

    p = Arrays(settings(batch_size=8))
    checked = p._call(["ab", "c"], [1, 1], kind="document", usage=None, cancel=None)
    assert np.shares_memory(checked, held[-1])
    assert p.embed_matrix(["ab", "c"])[:, 0].tolist() == [2.0, 1.0]


def test_sort_by_length_sends_longest_first_and_answers_in_input_order() -> None:
    class Sorted(Scripted):
        sort_by_length = True

    p = Sorted(settings(batch_size=3, max_input_tokens=5))
    # Lengths 1..8 characters, shuffled; 4 characters per token, so 24+ characters truncate.
    lengths = [3, 8, 1, 30, 5, 2, 7, 4, 6]
    texts = ["x" * n for n in lengths]
    usage = EmbeddingUsage()
    matrix = p.embed_matrix(texts, usage=usage)
    # Each request holds inputs of about one length, longest first.
    sent = [[len(t) for t in call] for call in p.calls]
    assert sent == [[20, 8, 7], [6, 5, 4], [3, 2, 1]]
    # Row i is still the vector of texts[i] (its first value is the length that was sent).
    assert matrix[:, 0].tolist() == [float(min(n, 20)) for n in lengths]
    # The over-long input is counted at its own position, not at its place in the sorted call.
    assert usage.truncated_inputs == [3]
    # Without the flag the requests keep the input order.
    plain = Scripted(settings(batch_size=3))
    plain.embed_matrix(texts)
    assert [len(t) for t in plain.calls[0]] == [3, 8, 1]


def test_vectors_that_are_not_numbers_or_not_a_matrix_are_rejected() -> None:
    class Words(Scripted):
        def _embed_batch(self, texts: list[str], *, kind: InputKind) -> Embedded:
            return Embedded([["a", "b"] for _ in texts])  # type: ignore[list-item]

    with pytest.raises(ProviderRejected, match="not numbers"):
        Words(settings()).embed_matrix(["a"])

    class Flat(Scripted):
        def _embed_batch(self, texts: list[str], *, kind: InputKind) -> Embedded:
            return Embedded(np.zeros(2 * len(texts), dtype=np.float32))

    with pytest.raises(ProviderRejected, match="array of shape"):
        Flat(settings()).embed_matrix(["a"])


# ---- rate limiter -------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_rate_limiter_requests_per_minute() -> None:
    clock = Clock()
    limiter = RateLimiter(requests_per_minute=120, clock=clock)  # 2 per second, burst 2
    assert limiter.delay(1) == 0 and limiter.delay(1) == 0
    wait = limiter.delay(1)
    assert wait == pytest.approx(0.5)
    clock.t += wait
    assert limiter.delay(1) == 0


def test_rate_limiter_tokens_per_minute_allows_big_requests_then_repays() -> None:
    clock = Clock()
    limiter = RateLimiter(tokens_per_minute=6000, clock=clock)  # 100 tokens/s, bucket 100
    assert limiter.delay(1000) == 0  # bigger than the bucket: admitted when full, leaves debt
    wait = limiter.delay(10)
    assert wait == pytest.approx(9.1)  # repay 900 + 10 at 100/s
    clock.t += wait
    assert limiter.delay(10) == 0


def test_rate_limiter_pause_holds_everyone() -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    assert limiter.delay(1) == 0
    limiter.pause(3.0)
    assert limiter.delay(1) == pytest.approx(3.0)
    clock.t += 3.0
    assert limiter.delay(1) == 0


def test_rate_limiter_spaces_real_requests() -> None:
    p = Scripted(settings(requests_per_minute=240, batch_size=1, max_concurrency=4))
    started = time.monotonic()
    p.embed_documents([str(i) for i in range(8)])  # 4/s, burst 4: the last 4 wait ~1 s
    assert time.monotonic() - started >= 0.9


# ---- headers and secrets ------------------------------------------------------------------------
def test_parse_retry_after() -> None:
    assert parse_retry_after({"Retry-After": "7"}) == 7
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    when = datetime.now(UTC) + timedelta(seconds=30)
    assert 25 <= (parse_retry_after({"Retry-After": format_datetime(when, usegmt=True)}) or 0) <= 31
    assert parse_retry_after({"x-ratelimit-reset-requests": "6m0s"}) == 360
    assert parse_retry_after({"content-type": "application/json"}) is None
    assert parse_retry_after(None) is None


def test_parse_duration() -> None:
    assert parse_duration("36s") == 36
    assert parse_duration("1.5s") == 1.5
    assert parse_duration("20ms") == 0.02
    assert parse_duration("1h2m3s") == 3723
    assert parse_duration("soon") is None and parse_duration("") is None


def test_redact_removes_keys() -> None:
    secret = "my-very-secret-value"
    text = (
        f"Incorrect API key provided: sk-proj-abc***wxyz. key {secret} "
        "Authorization: Bearer abc.def and ?key=AIzaSyA1234567890abcdefghijk"
    )
    clean = redact(text, [secret])
    assert secret not in clean and "sk-proj" not in clean and "abc.def" not in clean
    assert "AIza" not in clean and "Incorrect API key provided" in clean


# ---- registry -----------------------------------------------------------------------------------
def test_registry_lists_the_four_providers() -> None:
    assert set(PROVIDERS) == {"local", "openai", "ollama", "gemini"}
    for name in PROVIDERS:
        cls = provider_class(name)
        assert cls.name == name and cls.default_model


def test_unknown_provider_is_rejected() -> None:
    s = settings().model_copy(update={"provider": "nope"})
    with pytest.raises(ProviderRejected, match="choose one of"):
        create_provider(s)


def test_default_models() -> None:
    assert create_provider(settings()).model == "all-MiniLM-L6-v2"
    assert create_provider(settings(provider="openai")).model == "text-embedding-3-small"
    assert create_provider(settings(provider="ollama")).model == "nomic-embed-text"
    assert create_provider(settings(provider="gemini")).model == "gemini-embedding-001"


def test_dimension_options_are_validated() -> None:
    with pytest.raises(ProviderRejected, match="does not accept"):
        create_provider(settings(provider="openai", model="text-embedding-ada-002", dimensions=256))
    with pytest.raises(ProviderRejected, match="exceeds"):
        create_provider(settings(provider="openai", dimensions=5000))
    with pytest.raises(ProviderRejected, match="range"):
        create_provider(settings(provider="gemini", dimensions=64))
    assert create_provider(settings(provider="openai", dimensions=256)).dimension == 256
    assert (
        create_provider(settings(provider="openai", model="text-embedding-3-large")).dimension
        == 3072
    )
    assert create_provider(settings(provider="gemini")).dimension == 3072
    assert create_provider(settings(provider="ollama", model="mxbai-embed-large")).dimension == 1024
