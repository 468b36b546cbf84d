"""The hosted image providers through their real SDKs against loopback servers that speak their
wire formats: Cohere Embed v4 (``cohere``, ``POST /v2/embed``) and Gemini's multimodal embedding
model (``google-genai``, ``batchEmbedContents`` with inline images). Requests, batching, the
vectors back, errors (401, 429 with Retry-After, 5xx, 403) and the status report."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import ImageEmbeddingSettings
from app.embeddings.images import ImageEmbeddingProvider, create_image_provider
from app.embeddings.images.base import l2_normalised
from app.embeddings.images.cohere import CohereImageProvider
from app.embeddings.images.gemini import QUERY_INSTRUCTION, GeminiImageProvider
from app.embeddings.images.status import clear_probe_cache, image_provider_statuses
from app.errors import ProviderRejected, ProviderUnavailable
from tests.embeddings.conftest import GEMINI_KEY
from tests.embeddings.fakes import Reply, gemini_error
from tests.embeddings.image_servers import FakeCohere, FakeGeminiImages, cohere_error
from tests.embeddings.images import picture_colour, png, text_colour

COHERE_KEY = "cohere-test-key-DO-NOT-LEAK-0123456789"
RED, GREEN, BLUE = (230, 20, 20), (20, 200, 30), (10, 20, 240)


#: Providers a test built, closed after it (their SDK clients' pooled sockets).
_MADE: list[ImageEmbeddingProvider] = []


@pytest.fixture(autouse=True)
def _cohere_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("COHERE_API_KEY", "CO_API_KEY", "CO_API_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COHERE_API_KEY", COHERE_KEY)
    clear_probe_cache()
    yield
    while _MADE:
        _MADE.pop().close()


@pytest.fixture
def cohere() -> Iterator[FakeCohere]:
    server = FakeCohere()
    with server:
        yield server


@pytest.fixture
def gemini() -> Iterator[FakeGeminiImages]:
    server = FakeGeminiImages()
    with server:
        yield server


def cohere_provider(server: FakeCohere, **kw: object) -> CohereImageProvider:
    provider = create_image_provider(
        ImageEmbeddingSettings(provider="cohere", base_url=server.url, **kw)
    )
    assert isinstance(provider, CohereImageProvider)
    provider.backoff_base_s = 0.05
    _MADE.append(provider)
    return provider


def gemini_provider(server: FakeGeminiImages, **kw: object) -> GeminiImageProvider:
    provider = create_image_provider(
        ImageEmbeddingSettings(provider="gemini", base_url=server.url, **kw)
    )
    assert isinstance(provider, GeminiImageProvider)
    provider.backoff_base_s = 0.05
    _MADE.append(provider)
    return provider


def expected(vector: list[float], dim: int) -> list[float]:
    return l2_normalised((vector + [0.0] * dim)[:dim])


# ---- Cohere -------------------------------------------------------------------------------------
def test_cohere_request_shape_batches_and_vectors(cohere: FakeCohere) -> None:
    provider = cohere_provider(cohere, dimensions=256, batch_size=2)
    pictures = [png(RED), png(GREEN), png(BLUE), png(RED, size=(10, 90)), png(GREEN)]
    vectors = provider.embed_images(pictures)
    assert [v for v in vectors] == [
        pytest.approx(expected(picture_colour(p), 256), abs=1e-9) for p in pictures
    ]
    reqs = cohere.embed_requests
    assert [len(r.body["images"]) for r in reqs] == [2, 2, 1]
    for r in reqs:
        assert r.path == "/v2/embed"
        assert r.headers["authorization"] == f"Bearer {COHERE_KEY}"
        assert r.body["model"] == "embed-v4.0"
        assert r.body["input_type"] == "image"
        assert r.body["embedding_types"] == ["float"]
        assert r.body["output_dimension"] == 256
    sent = [base64.b64decode(u.split(",", 1)[1]) for r in reqs for u in r.body["images"]]
    assert sent == pictures  # the PNGs docvec made, unchanged

    query = provider.embed_query("red shoe")
    assert query == pytest.approx(expected(text_colour("red shoe"), 256), abs=1e-9)
    last = cohere.embed_requests[-1].body
    assert last["input_type"] == "search_query" and last["texts"] == ["red shoe"]
    assert provider.dimension == 256
    provider.close()


def test_cohere_default_size_and_refused_size() -> None:
    assert CohereImageProvider(ImageEmbeddingSettings(provider="cohere")).dimension == 1536
    with pytest.raises(ProviderRejected, match="256, 512, 1024, 1536"):
        CohereImageProvider(ImageEmbeddingSettings(provider="cohere", dimensions=700))


def test_cohere_401_is_permanent_and_never_shows_the_key(cohere: FakeCohere) -> None:
    cohere.push(cohere_error(401, f"invalid api token {COHERE_KEY}"))
    provider = cohere_provider(cohere)
    with pytest.raises(ProviderRejected) as caught:
        provider.embed_images([png(RED)])
    message = str(caught.value)
    assert "HTTP 401" in message and "COHERE_API_KEY" in message
    assert COHERE_KEY not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert len(cohere.embed_requests) == 1  # not retried


def test_cohere_429_waits_for_retry_after_then_succeeds(cohere: FakeCohere) -> None:
    cohere.push(cohere_error(429, "rate limited", {"Retry-After": "0.2"}))
    provider = cohere_provider(cohere)
    vectors = provider.embed_images([png(BLUE)])
    assert vectors == [pytest.approx(expected(picture_colour(png(BLUE)), 1536), abs=1e-9)]
    first, second = cohere.embed_requests
    assert second.at - first.at >= 0.2  # never earlier than asked


def test_cohere_429_past_the_tries_is_transient_with_its_wait(cohere: FakeCohere) -> None:
    cohere.push(*[cohere_error(429, "slow down", {"Retry-After": "0.05"})] * 3)
    provider = cohere_provider(cohere, max_attempts=3)
    with pytest.raises(ProviderUnavailable, match="HTTP 429") as caught:
        provider.embed_query("red")
    assert caught.value.retry_after_s == pytest.approx(0.05)
    assert len(cohere.embed_requests) == 3


@pytest.mark.parametrize("status", [500, 503])
def test_cohere_5xx_is_retried(cohere: FakeCohere, status: int) -> None:
    cohere.push(cohere_error(status, "internal error"))
    provider = cohere_provider(cohere)
    assert len(provider.embed_images([png(GREEN)])) == 1
    assert len(cohere.embed_requests) == 2
    cohere.push(*[cohere_error(status, "still down")] * 2)
    with pytest.raises(ProviderUnavailable, match=f"HTTP {status}"):
        cohere_provider(cohere, max_attempts=2).embed_images([png(GREEN)])


def test_cohere_unreachable_is_transient() -> None:
    provider = create_image_provider(
        ImageEmbeddingSettings(
            provider="cohere", base_url="http://127.0.0.1:9", max_attempts=1, request_timeout_s=2
        )
    )
    assert provider is not None
    _MADE.append(provider)
    with pytest.raises(ProviderUnavailable, match="cannot reach"):
        provider.embed_query("red")


# ---- Gemini -------------------------------------------------------------------------------------
def test_gemini_one_embedding_per_picture_six_per_request(gemini: FakeGeminiImages) -> None:
    provider = gemini_provider(gemini, dimensions=768, batch_size=16)
    pictures = [png(c) for c in (RED, GREEN, BLUE, RED, GREEN, BLUE, RED, GREEN)]
    vectors = provider.embed_images(pictures)
    assert vectors == [pytest.approx(expected(picture_colour(p), 768), abs=1e-9) for p in pictures]
    reqs = gemini.embed_requests
    assert [len(r.body["requests"]) for r in reqs] == [6, 2]  # the model's 6 images per request
    for r in reqs:
        assert r.path == "/v1beta/models/gemini-embedding-2:batchEmbedContents"
        assert r.headers["x-goog-api-key"] == GEMINI_KEY
        for item in r.body["requests"]:
            assert item["model"] == "models/gemini-embedding-2"
            assert item["outputDimensionality"] == 768
            (part,) = item["content"]["parts"]
            inline = part.get("inlineData") or part["inline_data"]
            assert inline.get("mimeType", inline.get("mime_type")) == "image/png"
    query = provider.embed_query("blue")
    assert query == pytest.approx(expected(text_colour("blue"), 768), abs=1e-9)
    (item,) = gemini.embed_requests[-1].body["requests"]
    assert item["content"]["parts"][0]["text"] == QUERY_INSTRUCTION + "blue"
    provider.close()


def test_gemini_quota_then_success_and_forbidden(gemini: FakeGeminiImages) -> None:
    quota = gemini_error(
        429,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded",
        details=[{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.1s"}],
    )
    gemini.push(quota)
    provider = gemini_provider(gemini)
    assert len(provider.embed_images([png(RED)])[0]) == 3072
    assert len(gemini.embed_requests) == 2
    gemini.push(gemini_error(403, "PERMISSION_DENIED", f"key {GEMINI_KEY} has no access"))
    with pytest.raises(ProviderRejected, match="HTTP 403") as caught:
        provider.embed_query("red")
    assert GEMINI_KEY not in str(caught.value)
    gemini.push(Reply(502, {"error": {"code": 502, "message": "bad gateway", "status": "X"}}))
    assert len(provider.embed_query("red")) == 3072  # 5xx retried


def test_gemini_size_range_is_checked() -> None:
    with pytest.raises(ProviderRejected, match="128-3072"):
        GeminiImageProvider(ImageEmbeddingSettings(provider="gemini", dimensions=64))


# ---- status -------------------------------------------------------------------------------------
def test_status_of_each_hosted_provider(
    cohere: FakeCohere, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = ImageEmbeddingSettings(provider="cohere", base_url=cohere.url, dimensions=512)
    report = {r.provider: r for r in image_provider_statuses(settings)}
    assert next(iter(report)) == "cohere"
    ok = report["cohere"]
    assert ok.configured and ok.available and ok.dimension == 512, ok.reason
    assert ok.checks["api_key"] == "present in COHERE_API_KEY"
    assert ok.checks["probe"].startswith("answered in")
    assert ok.api_key == {
        "env": ["COHERE_API_KEY", "CO_API_KEY"],
        "present": True,
        "found_in": "COHERE_API_KEY",
    }
    assert COHERE_KEY not in str(ok.as_dict())
    # Unconfigured ones are not probed; the local one has no folder.
    assert report["gemini"].checks["probe"] == "not checked" and report["gemini"].available
    assert not report["local"].available
    assert "DOCVEC_IMAGE_EMBEDDING__MODEL_PATH" in (report["local"].reason or "")

    monkeypatch.delenv("COHERE_API_KEY")
    clear_probe_cache()
    missing = image_provider_statuses(settings, probe="none")[0]
    assert not missing.available
    assert missing.reason == "no API key: set COHERE_API_KEY or CO_API_KEY"

    clear_probe_cache()
    monkeypatch.setenv("COHERE_API_KEY", COHERE_KEY)
    cohere.push(cohere_error(401, "invalid api token"))
    refused = image_provider_statuses(settings)[0]
    assert not refused.available and "HTTP 401" in (refused.reason or "")


def test_cli_providers_lists_image_providers(
    cohere: FakeCohere, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from app.cli import app as cli_app
    from app.config import get_settings
    from tests.embeddings.fakes import FakeOllama

    with FakeOllama() as embed:
        for key in [k for k in os.environ if k.startswith("DOCVEC_")]:
            monkeypatch.delenv(key)
        monkeypatch.setenv("DOCVEC_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("DOCVEC_EMBEDDING__PROVIDER", "ollama")
        monkeypatch.setenv("DOCVEC_EMBEDDING__BASE_URL", embed.url)
        monkeypatch.setenv("DOCVEC_IMAGE_EMBEDDING__PROVIDER", "cohere")
        monkeypatch.setenv("DOCVEC_IMAGE_EMBEDDING__BASE_URL", cohere.url)
        get_settings.cache_clear()
        try:
            done = CliRunner().invoke(cli_app, ["providers", "--json"])
            assert done.exit_code == 0, done.output
            listed = {r["provider"]: r for r in json.loads(done.stdout)["image_providers"]}
            assert listed["cohere"]["configured"] and listed["cohere"]["available"]
            assert listed["cohere"]["dimension"] == 1536
            assert COHERE_KEY not in done.output

            clear_probe_cache()
            cohere.push(cohere_error(401, "invalid api token"))
            done = CliRunner().invoke(cli_app, ["providers"])
        finally:
            get_settings.cache_clear()
    assert done.exit_code == 1  # the configured image provider is unavailable
    assert "Image providers" in done.stdout and "HTTP 401" in done.stdout
