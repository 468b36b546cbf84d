"""Fixtures for the provider tests: API keys in the environment, fresh fake servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.embeddings.status import clear_probe_cache
from tests.embeddings.fakes import FakeGemini, FakeOllama, FakeOpenAI

OPENAI_KEY = "sk-test-0penAIkey-DO-NOT-LEAK-1234567890"
GEMINI_KEY = "AIzaTestGeminiKey_DO-NOT-LEAK_0123456789"
OLLAMA_KEY = "ollama-test-key-DO-NOT-LEAK-42"


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Known test keys in the standard variables; nothing else from the caller's environment."""
    for name in ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "OLLAMA_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name in ("OPENAI_BASE_URL", "OLLAMA_HOST", "GOOGLE_GENAI_USE_VERTEXAI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    clear_probe_cache()


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        yield server


@pytest.fixture
def fake_gemini() -> Iterator[FakeGemini]:
    with FakeGemini() as server:
        yield server
