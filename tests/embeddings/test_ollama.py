"""The ``ollama`` provider through the real ``ollama`` SDK against a loopback ``/api/embed``."""

from __future__ import annotations

import logging
import socket

import pytest

from app.config import EmbeddingSettings
from app.embeddings import EmbeddingUsage, create_provider
from app.embeddings.ollama import OllamaProvider
from app.errors import ProviderRejected, ProviderUnavailable
from tests.embeddings.conftest import OLLAMA_KEY
from tests.embeddings.fakes import FakeOllama, Reply, bow_vector, close, tokens


def make(server: FakeOllama, **kw: object) -> OllamaProvider:
    settings = EmbeddingSettings(provider="ollama", base_url=server.url, **kw)  # type: ignore[arg-type]
    provider = create_provider(settings)
    assert isinstance(provider, OllamaProvider)
    provider.backoff_base_s = 0.05
    return provider


def test_request_shape_prefixes_truncate_and_usage(fake_ollama: FakeOllama) -> None:
    p = make(fake_ollama, batch_size=4, max_concurrency=1)
    texts = [f"paragraph {i} on vector search" for i in range(9)]
    usage = EmbeddingUsage()
    vectors = p.embed_documents(texts, usage=usage)
    sent = [f"search_document: {t}" for t in texts]
    assert close(vectors, [bow_vector(t, 768) for t in sent])
    reqs = fake_ollama.embed_requests
    assert [r.body["input"] for r in reqs] == [sent[0:4], sent[4:8], sent[8:9]]
    for r in reqs:
        assert r.body["model"] == "nomic-embed-text"
        assert r.body["truncate"] is True  # the documented over-long policy, stated
        assert "dimensions" not in r.body
        assert "authorization" not in r.headers  # a local server needs no key
    assert usage.tokens == sum(tokens(t) for t in sent)  # prompt_eval_count
    assert usage.requests == 3 and usage.inputs == 9

    p.embed_query("how are chunks embedded?")
    assert fake_ollama.embed_requests[-1].body["input"] == [
        "search_query: how are chunks embedded?"
    ]
    assert p.dimension == 768  # from the table, no probe


def test_dimensions_and_key_are_sent(
    fake_ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_API_KEY", OLLAMA_KEY)
    p = make(fake_ollama, model="qwen3-embedding:0.6b", dimensions=256)
    assert p.dimension == 256
    assert len(p.embed_query("q")) == 256
    r = fake_ollama.embed_requests[0]
    assert r.body["dimensions"] == 256
    assert r.headers["authorization"] == f"Bearer {OLLAMA_KEY}"
    assert OLLAMA_KEY.encode() not in r.raw and OLLAMA_KEY not in r.path


def test_unknown_model_dimension_is_probed_once(fake_ollama: FakeOllama) -> None:
    p = make(fake_ollama, model="my-embedder:latest")
    assert p.known_dimension() is None
    assert p.dimension == fake_ollama.dim
    assert p.dimension == fake_ollama.dim
    assert len(fake_ollama.embed_requests) == 1


def test_model_not_pulled_is_permanent_with_the_remedy() -> None:
    with FakeOllama(models={"all-minilm"}) as server:
        with pytest.raises(ProviderRejected, match=r"HTTP 404.*not found.*ollama pull"):
            make(server).embed_documents(["hello"])
        assert len(server.embed_requests) == 1


def test_401_is_not_retried_and_the_key_is_not_leaked(
    fake_ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("OLLAMA_API_KEY", OLLAMA_KEY)
    fake_ollama.push(Reply(401, {"error": f"unauthorized: key {OLLAMA_KEY} is not valid"}))
    with pytest.raises(ProviderRejected, match="HTTP 401") as caught:
        make(fake_ollama).embed_documents(["hello"])
    assert len(fake_ollama.embed_requests) == 1
    assert OLLAMA_KEY not in str(caught.value) and OLLAMA_KEY not in caplog.text


def test_429_with_retry_after_is_retried_after_that_delay(fake_ollama: FakeOllama) -> None:
    fake_ollama.push(Reply(429, {"error": "too many requests"}, {"Retry-After": "1"}))
    usage = EmbeddingUsage()
    make(fake_ollama).embed_documents(["hello"], usage=usage)
    first, second = fake_ollama.embed_requests
    assert second.at - first.at >= 1.0 and usage.retries == 1


def test_500s_are_retried_then_given_up(fake_ollama: FakeOllama) -> None:
    boom = Reply(500, {"error": "llama runner process has terminated: signal: killed"})
    fake_ollama.push(boom, boom, boom)
    with pytest.raises(ProviderUnavailable, match=r"HTTP 500.*gave up after 3 tries"):
        make(fake_ollama, max_attempts=3).embed_documents(["hello"])
    assert len(fake_ollama.embed_requests) == 3


def test_timeout_and_reset_are_retried(fake_ollama: FakeOllama) -> None:
    fake_ollama.push(Reply(delay_s=2.0), Reply(drop=True))
    usage = EmbeddingUsage()
    make(fake_ollama, request_timeout_s=0.5).embed_documents(["hello"], usage=usage)
    assert usage.retries == 2


def test_server_not_running_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = create_provider(
        EmbeddingSettings(provider="ollama", base_url=f"http://127.0.0.1:{port}", max_attempts=2)
    )
    p.backoff_base_s = 0.05
    with pytest.raises(ProviderUnavailable, match=r"cannot reach.*ollama serve"):
        p.embed_documents(["hello"])


def test_out_of_order_batches_come_back_in_input_order() -> None:
    with FakeOllama(random_delay_s=(0.0, 0.25)) as server:
        p = make(server, model="all-minilm", batch_size=2, max_concurrency=4)
        texts = [f"text {i} " + "filler " * (i % 5) + f"tag{i}" for i in range(24)]
        vectors = p.embed_documents(texts)
        assert close(vectors, [bow_vector(t, 384) for t in texts])
        finished = [texts.index(r.body["input"][0]) for r in server.completed]
        assert finished != sorted(finished) and 2 <= server.max_in_flight <= 4
