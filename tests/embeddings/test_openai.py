"""The ``openai`` provider through the real ``openai`` SDK against a loopback ``/v1/embeddings``."""

from __future__ import annotations

import logging
import random
import socket
from pathlib import Path

import pytest

from app.config import EmbeddingSettings
from app.embeddings import EmbeddingUsage, create_provider
from app.embeddings.openai import OpenAIProvider
from app.errors import ProviderRejected, ProviderUnavailable
from tests.embeddings.conftest import OPENAI_KEY
from tests.embeddings.fakes import (
    FakeOpenAI,
    Reply,
    bow_vector,
    close,
    openai_error,
    tokens,
)


def make(server: FakeOpenAI, **kw: object) -> OpenAIProvider:
    settings = EmbeddingSettings(provider="openai", base_url=server.url + "/v1", **kw)  # type: ignore[arg-type]
    provider = create_provider(settings)
    assert isinstance(provider, OpenAIProvider)
    provider.backoff_base_s = 0.05  # keep the 5xx tests short; Retry-After is never shortened
    return provider


RATE_LIMITED = openai_error(
    429,
    "Rate limit reached for text-embedding-3-small in organization org-x on requests per min "
    "(RPM): Limit 3000, Used 3000, Requested 1. Please try again in 20ms.",
    type_="requests",
    code="rate_limit_exceeded",
    headers={"retry-after": "1", "x-ratelimit-reset-requests": "20ms"},
)


def test_request_shape_dimensions_usage_and_key(fake_openai: FakeOpenAI) -> None:
    p = make(fake_openai, batch_size=4, dimensions=64, max_concurrency=1)
    texts = [f"chunk number {i} about retrieval" for i in range(10)]
    usage = EmbeddingUsage()
    vectors = p.embed_documents(texts, usage=usage)

    assert close(vectors, [bow_vector(t, 64) for t in texts])
    reqs = fake_openai.embed_requests
    assert [len(r.body["input"]) for r in reqs] == [4, 4, 2]
    for r in reqs:
        assert r.path == "/v1/embeddings"
        assert r.body["model"] == "text-embedding-3-small"
        assert r.body["dimensions"] == 64
        assert r.body["encoding_format"] == "float"
        # The key travels in the Authorization header and nowhere else.
        assert r.headers["authorization"] == f"Bearer {OPENAI_KEY}"
        assert OPENAI_KEY not in r.path and OPENAI_KEY.encode() not in r.raw
        assert all(OPENAI_KEY not in v for k, v in r.headers.items() if k != "authorization")
    assert usage.requests == 3 and usage.inputs == 10 and usage.retries == 0
    assert usage.tokens == sum(tokens(t) for t in texts)  # as reported by the server
    assert p.dimension == 64


def test_batches_stay_within_count_and_token_limits(fake_openai: FakeOpenAI) -> None:
    rng = random.Random(7)
    words = [w for w in Path(__file__).read_text().split() if w.isalpha()]

    def text(n_tokens: int) -> str:
        out = " ".join(rng.choice(words) for _ in range(n_tokens))
        return out

    # 45 inputs of ~7,000 tokens (~315k in all) and one of ~12,000 (over the 8,191 limit).
    texts = [text(7000) for _ in range(45)] + [text(12000)]
    p = make(fake_openai, batch_size=2048, dimensions=8, max_concurrency=2)
    usage = EmbeddingUsage()
    vectors = p.embed_documents(texts, usage=usage)

    assert len(vectors) == 46 and usage.truncated == 1
    reqs = fake_openai.embed_requests
    assert len(reqs) >= 2
    for r in reqs:
        counts = [tokens(t) for t in r.body["input"]]
        assert len(counts) <= 2048
        assert sum(counts) <= 300_000
        assert max(counts) <= 8191
    sent = [t for r in reqs for t in r.body["input"]]
    longest = max(sent, key=len)
    assert tokens(longest) <= 8191 and texts[-1].startswith(longest[:1000])


def test_429_with_retry_after_is_retried_after_that_delay(fake_openai: FakeOpenAI) -> None:
    fake_openai.push(RATE_LIMITED)
    p = make(fake_openai)
    usage = EmbeddingUsage()
    assert len(p.embed_documents(["hello"], usage=usage)) == 1
    first, second = fake_openai.embed_requests
    assert second.at - first.at >= 1.0
    assert usage.retries == 1 and usage.requests == 2


def test_500s_are_retried_then_given_up_as_transient(fake_openai: FakeOpenAI) -> None:
    server_error = openai_error(
        500, "The server had an error while processing your request.", type_="server_error"
    )
    fake_openai.push(server_error, server_error, server_error, server_error)
    p = make(fake_openai, max_attempts=3)
    usage = EmbeddingUsage()
    with pytest.raises(ProviderUnavailable, match=r"HTTP 500.*gave up after 3 tries") as caught:
        p.embed_documents(["hello"], usage=usage)
    assert len(fake_openai.embed_requests) == 3
    assert usage.retries == 2 and usage.requests == 3 and usage.inputs == 0
    assert caught.value.transient


def test_401_is_not_retried_and_the_key_is_not_leaked(
    fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake_openai.push(
        openai_error(
            401,
            f"Incorrect API key provided: {OPENAI_KEY}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )
    )
    p = make(fake_openai)
    with pytest.raises(ProviderRejected) as caught:
        p.embed_documents(["hello"])
    assert len(fake_openai.embed_requests) == 1
    message = str(caught.value)
    assert "HTTP 401" in message and "invalid_api_key" in message
    assert "OPENAI_API_KEY" in message  # says where the key comes from
    assert OPENAI_KEY not in message and OPENAI_KEY[:12] not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert OPENAI_KEY not in caplog.text


@pytest.mark.parametrize("status", [400, 403, 404])
def test_other_client_errors_are_permanent(fake_openai: FakeOpenAI, status: int) -> None:
    fake_openai.push(
        openai_error(status, "The model `nope` does not exist", code="model_not_found")
    )
    with pytest.raises(ProviderRejected, match=f"HTTP {status}"):
        make(fake_openai).embed_documents(["hello"])
    assert len(fake_openai.embed_requests) == 1


def test_exhausted_quota_is_permanent(fake_openai: FakeOpenAI) -> None:
    fake_openai.push(
        openai_error(
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            type_="insufficient_quota",
            code="insufficient_quota",
        )
    )
    with pytest.raises(ProviderRejected, match="insufficient_quota"):
        make(fake_openai).embed_documents(["hello"])
    assert len(fake_openai.embed_requests) == 1


def test_timeouts_and_dropped_connections_are_retried(fake_openai: FakeOpenAI) -> None:
    fake_openai.push(Reply(delay_s=2.0), Reply(drop=True))
    p = make(fake_openai, request_timeout_s=0.5)
    usage = EmbeddingUsage()
    assert close(p.embed_documents(["hello"], usage=usage), [bow_vector("hello", 1536)])
    assert usage.retries == 2 and usage.requests == 3


def test_unreachable_server_is_transient() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = EmbeddingSettings(
        provider="openai", base_url=f"http://127.0.0.1:{port}/v1", max_attempts=2
    )
    p = create_provider(settings)
    p.backoff_base_s = 0.05
    with pytest.raises(ProviderUnavailable, match="cannot reach"):
        p.embed_documents(["hello"])


def test_out_of_order_batches_come_back_in_input_order() -> None:
    with FakeOpenAI(random_delay_s=(0.0, 0.25)) as server:
        p = make(server, batch_size=3, dimensions=32, max_concurrency=4)
        texts = [f"document {i} " + "word " * (i % 7) + f"topic{i}" for i in range(40)]
        vectors = p.embed_documents(texts)
        assert close(vectors, [bow_vector(t, 32) for t in texts])
        assert 2 <= server.max_in_flight <= 4
        finished = [texts.index(r.body["input"][0]) for r in server.completed]
        assert len(finished) == 14 and finished != sorted(finished)  # really out of order


def test_compatible_server_without_key_probes_an_unknown_model(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    p = make(fake_openai, model="BAAI/bge-small-en-v1.5")
    assert p.known_dimension() is None
    assert p.dimension == fake_openai.dim  # one probe request
    assert len(fake_openai.embed_requests) == 1
    p.embed_query("what is docvec?")
    query = fake_openai.embed_requests[-1]
    # The model's documented query instruction is prepended.
    assert query.body["input"] == [
        "Represent this sentence for searching relevant passages: what is docvec?"
    ]
    assert "dimensions" not in query.body
    assert query.headers["authorization"] == "Bearer EMPTY"


def test_hosted_openai_without_a_key_is_rejected_before_any_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    p = create_provider(EmbeddingSettings(provider="openai"))
    assert p.problems() == ["no API key: set OPENAI_API_KEY"]
    with pytest.raises(ProviderRejected, match="needs an API key: set OPENAI_API_KEY"):
        p.embed_query("hello")


def test_api_key_env_names_another_variable(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEAM_OPENAI_KEY", "sk-team-key-0123456789")
    p = make(fake_openai, api_key_env="TEAM_OPENAI_KEY")
    p.embed_query("hello")
    assert fake_openai.embed_requests[0].headers["authorization"] == "Bearer sk-team-key-0123456789"
    assert "sk-team" not in repr(p.settings) and "sk-team" not in str(p.describe())
