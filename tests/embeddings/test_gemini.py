"""The ``gemini`` provider through the real ``google-genai`` SDK against a loopback
``batchEmbedContents``."""

from __future__ import annotations

import logging

import pytest

from app.config import EmbeddingSettings
from app.embeddings import EmbeddingUsage, create_provider
from app.embeddings.gemini import GeminiProvider
from app.errors import ProviderRejected, ProviderUnavailable
from tests.embeddings.conftest import GEMINI_KEY
from tests.embeddings.fakes import FakeGemini, Reply, bow_vector, close, gemini_error, tokens

PATH = "/v1beta/models/gemini-embedding-001:batchEmbedContents"
QUOTA = gemini_error(
    429,
    "RESOURCE_EXHAUSTED",
    "You exceeded your current quota, please check your plan and billing details.",
    details=[
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [{"quotaId": "EmbedContentRequestsPerMinutePerUserPerProjectPerModel"}],
        },
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"},
    ],
)


def make(server: FakeGemini, **kw: object) -> GeminiProvider:
    settings = EmbeddingSettings(provider="gemini", base_url=server.url, **kw)  # type: ignore[arg-type]
    provider = create_provider(settings)
    assert isinstance(provider, GeminiProvider)
    provider.backoff_base_s = 0.05
    return provider


def test_request_shape_task_types_dimensions_and_key(fake_gemini: FakeGemini) -> None:
    p = make(fake_gemini, dimensions=768, batch_size=4096, max_concurrency=1)
    texts = [f"passage {i} about embeddings" for i in range(250)]
    usage = EmbeddingUsage()
    vectors = p.embed_documents(texts, usage=usage)
    assert close(vectors, [bow_vector(t, 768) for t in texts])

    reqs = fake_gemini.embed_requests
    assert [len(r.body["requests"]) for r in reqs] == [100, 100, 50]  # batchEmbedContents cap
    for r in reqs:
        assert r.path == PATH  # no key in the URL
        assert r.headers["x-goog-api-key"] == GEMINI_KEY
        assert GEMINI_KEY.encode() not in r.raw
        for item in r.body["requests"]:
            assert item["model"] == "models/gemini-embedding-001"
            assert item["taskType"] == "RETRIEVAL_DOCUMENT"
            assert item["outputDimensionality"] == 768
    assert usage.requests == 3 and usage.inputs == 250

    assert close(
        [p.embed_query("where are embeddings?")], [bow_vector("where are embeddings?", 768)]
    )
    query = fake_gemini.embed_requests[-1].body["requests"]
    assert [q["taskType"] for q in query] == ["RETRIEVAL_QUERY"]
    assert query[0]["content"]["parts"] == [{"text": "where are embeddings?"}]
    assert p.dimension == 768


def test_default_dimension_comes_from_the_table(fake_gemini: FakeGemini) -> None:
    p = make(fake_gemini)
    assert p.dimension == 3072 and not fake_gemini.requests
    assert len(p.embed_query("q")) == 3072
    assert "outputDimensionality" not in fake_gemini.embed_requests[0].body["requests"][0]


def test_overlong_input_is_cut_to_the_input_limit(fake_gemini: FakeGemini) -> None:
    p = make(fake_gemini, dimensions=128)
    long_text = " ".join(f"word{i}" for i in range(3000))
    usage = EmbeddingUsage()
    p.embed_documents([long_text, "short"], usage=usage)
    sent = [
        i["content"]["parts"][0]["text"] for i in fake_gemini.embed_requests[0].body["requests"]
    ]
    assert tokens(sent[0]) <= 2048 and long_text.startswith(sent[0]) and sent[1] == "short"
    assert usage.truncated == 1


def test_429_retry_info_is_honoured(fake_gemini: FakeGemini) -> None:
    fake_gemini.push(QUOTA)
    usage = EmbeddingUsage()
    make(fake_gemini, dimensions=128).embed_documents(["hello"], usage=usage)
    first, second = fake_gemini.embed_requests
    assert second.at - first.at >= 1.0 and usage.retries == 1


def test_429_retry_after_header_is_honoured(fake_gemini: FakeGemini) -> None:
    fake_gemini.push(
        gemini_error(429, "RESOURCE_EXHAUSTED", "Resource exhausted", headers={"Retry-After": "1"})
    )
    make(fake_gemini, dimensions=128).embed_query("hello")
    first, second = fake_gemini.embed_requests
    assert second.at - first.at >= 1.0


def test_503_is_retried_then_given_up(fake_gemini: FakeGemini) -> None:
    busy = gemini_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
    fake_gemini.push(busy, busy, busy)
    with pytest.raises(ProviderUnavailable, match=r"HTTP 503 UNAVAILABLE.*gave up after 3 tries"):
        make(fake_gemini, max_attempts=3).embed_documents(["hello"])
    assert len(fake_gemini.embed_requests) == 3


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        (
            gemini_error(
                400,
                "INVALID_ARGUMENT",
                f"API key not valid. Please pass a valid API key. ({GEMINI_KEY})",
                details=[
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                    }
                ],
            ),
            400,
        ),
        (gemini_error(401, "UNAUTHENTICATED", "Request had invalid authentication."), 401),
        (gemini_error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers."), 403),
        (gemini_error(404, "NOT_FOUND", "models/nope is not found for API version v1beta"), 404),
    ],
)
def test_client_errors_are_not_retried_and_the_key_is_not_leaked(
    fake_gemini: FakeGemini, reply: Reply, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake_gemini.push(reply)
    with pytest.raises(ProviderRejected, match=f"HTTP {status}") as caught:
        make(fake_gemini).embed_documents(["hello"])
    assert len(fake_gemini.embed_requests) == 1
    assert GEMINI_KEY not in str(caught.value) and GEMINI_KEY not in caplog.text


def test_key_variables_follow_the_sdk_order(
    fake_gemini: FakeGemini, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As in google-genai: GOOGLE_API_KEY wins when both are set.
    monkeypatch.setenv("GOOGLE_API_KEY", "AIzaGoogleKey_0123456789abcdefghijk")
    make(fake_gemini).embed_query("hello")
    assert fake_gemini.embed_requests[-1].headers["x-goog-api-key"].startswith("AIzaGoogle")
    monkeypatch.delenv("GOOGLE_API_KEY")
    make(fake_gemini).embed_query("hello")
    assert fake_gemini.embed_requests[-1].headers["x-goog-api-key"] == GEMINI_KEY
    monkeypatch.delenv("GEMINI_API_KEY")
    missing = make(fake_gemini)
    assert missing.problems() == ["no API key: set GOOGLE_API_KEY or GEMINI_API_KEY"]
    with pytest.raises(ProviderRejected, match="needs an API key"):
        missing.embed_query("hello")


def test_out_of_order_batches_come_back_in_input_order() -> None:
    with FakeGemini(random_delay_s=(0.0, 0.25)) as server:
        p = make(server, dimensions=128, batch_size=3, max_concurrency=4)
        texts = [f"line {i} " + "pad " * (i % 4) + f"key{i}" for i in range(30)]
        vectors = p.embed_documents(texts)
        assert close(vectors, [bow_vector(t, 128) for t in texts])
        firsts = [r.body["requests"][0]["content"]["parts"][0]["text"] for r in server.completed]
        finished = [texts.index(t) for t in firsts]
        assert finished != sorted(finished) and 2 <= server.max_in_flight <= 4


def test_timeout_and_reset_are_retried(fake_gemini: FakeGemini) -> None:
    fake_gemini.push(Reply(delay_s=2.0), Reply(drop=True))
    usage = EmbeddingUsage()
    p = make(fake_gemini, dimensions=128, request_timeout_s=0.5)
    p.embed_documents(["hello"], usage=usage)
    assert usage.retries == 2 and len(fake_gemini.embed_requests) == 3
