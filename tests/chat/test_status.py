"""``docvec providers`` and ``GET /status`` list the chat providers beside the embedding ones."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.api.main import create_app
from app.chat.status import clear_chat_probe_cache
from app.cli import app as cli_app
from app.config import ChatSettings, EmbeddingSettings, Settings, get_settings
from app.runtime import Runtime
from tests.chat.conftest import OPENAI_KEY
from tests.chat.fakes import FakeOllamaChat, FakeOpenAIChat, openai_error
from tests.embeddings.fakes import FakeOllama


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["provider"]: item for item in items}


def test_status_endpoint_lists_chat_providers(tmp_path: Path) -> None:
    with FakeOllama() as embed, FakeOllamaChat() as chat:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            data_dir=tmp_path / "data",
            embedding=EmbeddingSettings(provider="ollama", base_url=embed.url),
            chat=ChatSettings(provider="ollama", base_url=chat.url, model="qwen2.5:7b"),
        )
        rt = Runtime(settings)
        with TestClient(create_app(settings, runtime=rt, enqueue=lambda d, g: None)) as client:
            body = client.get("/status").json()
            assert body["configured_chat_provider"] == "ollama"
            s = by_name(body["chat_providers"])
            assert body["chat_providers"][0]["provider"] == "ollama"
            assert set(s) == {"extractive", "openai", "ollama", "gemini"}
            assert s["ollama"]["available"] and s["ollama"]["model"] == "qwen2.5:7b"
            assert s["ollama"]["checks"]["server"].startswith("answered in")
            assert s["ollama"]["limits"]["context_window_tokens"] == 8192
            assert s["extractive"]["available"] and s["extractive"]["generative"] is False
            assert s["openai"]["checks"]["server"] == "not checked"
            body = client.get("/status", params={"probe": "none"}).json()
            assert by_name(body["chat_providers"])["ollama"]["checks"]["server"] == "not checked"
            assert by_name(body["providers"])["ollama"]["configured"]  # embeddings still there
        rt.close()
        # One probe: a one-word answer of at most 16 tokens.
        (probe,) = chat.chat_requests
        assert probe.body["options"]["num_predict"] == 16


def test_cli_providers_lists_chat_providers_and_fails_on_the_configured_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeOllama() as embed, FakeOpenAIChat() as chat:
        for key in [k for k in os.environ if k.startswith("DOCVEC_")]:
            monkeypatch.delenv(key)
        monkeypatch.delenv("GEMINI_API_KEY")
        monkeypatch.setenv("DOCVEC_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("DOCVEC_EMBEDDING__PROVIDER", "ollama")
        monkeypatch.setenv("DOCVEC_EMBEDDING__BASE_URL", embed.url)
        monkeypatch.setenv("DOCVEC_CHAT__PROVIDER", "openai")
        monkeypatch.setenv("DOCVEC_CHAT__BASE_URL", chat.url + "/v1")
        get_settings.cache_clear()
        try:
            done = CliRunner().invoke(cli_app, ["providers", "--json"])
            assert done.exit_code == 0, done.output
            s = by_name(json.loads(done.stdout)["chat_providers"])
            assert s["openai"]["configured"] and s["openai"]["available"]
            assert s["openai"]["base_url"] == chat.url + "/v1"
            assert not s["gemini"]["available"] and "GEMINI_API_KEY" in s["gemini"]["reason"]
            assert OPENAI_KEY not in done.output

            clear_chat_probe_cache()
            chat.push(openai_error(401, "Incorrect API key provided: sk-abc***wxyz."))
            done = CliRunner().invoke(cli_app, ["providers"])
        finally:
            get_settings.cache_clear()
        assert done.exit_code == 1  # the configured chat provider is unavailable
        assert "Chat providers" in done.stdout and "HTTP 401" in done.stdout
