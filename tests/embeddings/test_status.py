"""``docvec providers`` and ``GET /status`` tell the truth about each provider."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.main import create_app
from app.config import EmbeddingSettings, Settings
from app.embeddings.status import provider_statuses
from app.runtime import Runtime
from tests.embeddings.conftest import GEMINI_KEY, OPENAI_KEY
from tests.embeddings.fakes import FakeGemini, FakeOllama, FakeOpenAI, openai_error


def by_name(report: list) -> dict:  # type: ignore[type-arg]
    return {r["provider"] if isinstance(r, dict) else r.provider: r for r in report}


def test_configured_provider_is_probed_and_the_others_are_not(fake_openai: FakeOpenAI) -> None:
    settings = EmbeddingSettings(
        provider="openai", base_url=fake_openai.url + "/v1", dimensions=256
    )
    report = provider_statuses(settings)
    assert report[0].provider == "openai" and report[0].configured
    s = by_name(report)
    openai = s["openai"]
    assert openai.available and openai.dimension == 256
    assert openai.checks["server"].startswith("answered in")
    assert openai.api_key == {
        "env": ["OPENAI_API_KEY"],
        "present": True,
        "found_in": "OPENAI_API_KEY",
    }
    assert openai.limits["max_inputs_per_request"] == 2048
    assert openai.limits["max_tokens_per_request"] == 300_000
    assert openai.limits["max_input_tokens"] == 8191
    assert len(fake_openai.embed_requests) == 1  # exactly one probe
    # Not configured: checked without a request, and said so.
    assert s["ollama"].checks["server"] == "not checked"
    assert s["ollama"].base_url == "http://localhost:11434"
    assert s["gemini"].available and s["gemini"].checks["api_key"] == "present in GEMINI_API_KEY"
    assert s["local"].available and s["local"].dimension == 384
    dumped = json.dumps([r.as_dict() for r in report])
    assert OPENAI_KEY not in dumped and GEMINI_KEY not in dumped


def test_probe_results_are_cached(fake_openai: FakeOpenAI) -> None:
    settings = EmbeddingSettings(provider="openai", base_url=fake_openai.url + "/v1")
    provider_statuses(settings)
    provider_statuses(settings)
    assert len(fake_openai.embed_requests) == 1


def test_failures_are_reported_with_their_reason(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_openai.push(openai_error(401, f"Incorrect API key provided: {OPENAI_KEY}"))
    settings = EmbeddingSettings(provider="openai", base_url=fake_openai.url + "/v1")
    openai = provider_statuses(settings)[0]
    assert not openai.available and "HTTP 401" in (openai.reason or "")
    assert OPENAI_KEY not in json.dumps(openai.as_dict())

    monkeypatch.delenv("GEMINI_API_KEY")
    gemini = by_name(provider_statuses(settings, probe="none"))["gemini"]
    assert not gemini.available
    assert gemini.reason == "no API key: set GOOGLE_API_KEY or GEMINI_API_KEY"


def test_probe_all_reaches_each_server(monkeypatch: pytest.MonkeyPatch) -> None:
    # No OpenAI key: its public default is then not probed (a test must not call api.openai.com).
    monkeypatch.delenv("OPENAI_API_KEY")
    with FakeOllama() as ollama, FakeGemini() as gemini:
        # Only the configured provider takes the configured URL; point the others' defaults at
        # the fakes by configuring each in turn.
        for name, url, dim in (("ollama", ollama.url, 768), ("gemini", gemini.url, 3072)):
            report = provider_statuses(
                EmbeddingSettings(provider=name, base_url=url), probe="all", timeout_s=2
            )
            s = by_name(report)
            assert s[name].available and s[name].dimension == dim, s[name]
            assert not s["openai"].available and "server" not in s["openai"].checks
            assert s["local"].available
        assert len(ollama.embed_requests) == 1 and len(gemini.embed_requests) == 1


def test_unavailable_sdk_is_a_reason_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.embeddings.gemini import GeminiProvider

    monkeypatch.setattr(GeminiProvider, "sdk_modules", ("google.genai", "no_such_sdk_module"))
    gemini = by_name(provider_statuses(EmbeddingSettings(), probe="none"))["gemini"]
    assert not gemini.available
    assert "SDK not installed: python module 'no_such_sdk_module'" in (gemini.reason or "")


def test_cli_providers_json(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DOCVEC_EMBEDDING__PROVIDER": "openai",
        "DOCVEC_EMBEDDING__BASE_URL": fake_openai.url + "/v1",
        "DOCVEC_EMBEDDING__MODEL": "text-embedding-3-large",
        "DOCVEC_EMBEDDING__DIMENSIONS": "1024",
    }
    env.pop("GEMINI_API_KEY", None)
    exe = str(Path(sys.executable).parent / "docvec")
    done = subprocess.run(
        [exe, "providers", "--json"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    s = by_name(json.loads(done.stdout)["providers"])
    assert s["openai"]["configured"] and s["openai"]["available"]
    assert s["openai"]["model"] == "text-embedding-3-large" and s["openai"]["dimension"] == 1024
    assert s["gemini"]["available"] is False and "GEMINI_API_KEY" in s["gemini"]["reason"]
    assert OPENAI_KEY not in done.stdout + done.stderr

    fake_openai.push(openai_error(404, "The model `text-embedding-3-large` does not exist"))
    done = subprocess.run([exe, "providers"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 1  # the configured provider is unavailable
    assert "unavailable" in done.stdout and "HTTP 404" in done.stdout


def test_status_endpoint(fake_ollama: FakeOllama, tmp_path: Path) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=tmp_path / "data",
        embedding=EmbeddingSettings(provider="ollama", base_url=fake_ollama.url),
    )
    rt = Runtime(settings)
    with TestClient(create_app(settings, runtime=rt, enqueue=lambda d, g: None)) as client:
        body = client.get("/status").json()
        assert body["configured_provider"] == "ollama"
        s = by_name(body["providers"])
        assert s["ollama"]["available"] and s["ollama"]["dimension"] == 768
        assert s["ollama"]["checks"]["server"].startswith("answered")
        assert s["ollama"]["limits"]["overlong_inputs"].startswith("sent with truncate=true")
        assert s["openai"]["checks"]["server"] == "not checked"
        body = client.get("/status", params={"probe": "none"}).json()
        assert by_name(body["providers"])["ollama"]["checks"]["server"] == "not checked"
        assert client.get("/status", params={"probe": "bogus"}).status_code == 422
    rt.close()
    assert len(fake_ollama.embed_requests) == 1
