"""Fixtures of the chat provider tests: known keys in the environment, fresh loopback servers,
and one way to build each provider against its server (:class:`Flavour`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from app.chat import RemoteChatProvider, create_chat_provider
from app.chat.status import clear_chat_probe_cache
from app.config import ChatSettings
from tests.chat.fakes import (
    ChatReply,
    FakeChatServer,
    FakeGeminiChat,
    FakeOllamaChat,
    FakeOpenAIChat,
    gemini_error,
    ollama_error,
    openai_error,
)

OPENAI_KEY = "sk-test-0penAIchat-DO-NOT-LEAK-1234567890"
GEMINI_KEY = "AIzaTestGeminiChatKey_DO-NOT-LEAK_01234567"
OLLAMA_KEY = "ollama-chat-key-DO-NOT-LEAK-42"


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Known test keys in the standard variables; nothing else from the caller's environment."""
    for name in ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "OLLAMA_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name in ("OPENAI_BASE_URL", "OLLAMA_HOST", "GOOGLE_GENAI_USE_VERTEXAI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    monkeypatch.setenv("OLLAMA_API_KEY", OLLAMA_KEY)
    clear_chat_probe_cache()


@dataclass(frozen=True)
class Flavour:
    """One provider with its loopback server: how to build both, and its errors."""

    name: str
    server: Callable[[], FakeChatServer]
    base_url: Callable[[FakeChatServer], str]
    key: str
    #: A 429 asking to wait ``seconds`` (in the provider's own words).
    rate_limited: Callable[[float], ChatReply]
    unauthorized: Callable[[], ChatReply]

    def settings(self, server: FakeChatServer, **kw: Any) -> ChatSettings:
        return ChatSettings(provider=self.name, base_url=self.base_url(server), **kw)

    def make(self, server: FakeChatServer, **kw: Any) -> RemoteChatProvider[Any]:
        provider = create_chat_provider(self.settings(server, **kw))
        assert isinstance(provider, RemoteChatProvider)
        provider.backoff_base_s = 0.01  # keep 5xx retries short; Retry-After is never shortened
        return provider


FLAVOURS = [
    Flavour(
        "openai",
        FakeOpenAIChat,
        lambda s: s.url + "/v1",
        OPENAI_KEY,
        lambda wait: openai_error(
            429,
            "Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 3, Used 3.",
            code="rate_limit_exceeded",
            headers={"retry-after": f"{wait:g}"},
        ),
        lambda: openai_error(
            401,
            f"Incorrect API key provided: {OPENAI_KEY[:8]}***{OPENAI_KEY[-4:]}.",
            code="invalid_api_key",
        ),
    ),
    Flavour(
        "ollama",
        FakeOllamaChat,
        lambda s: s.url,
        OLLAMA_KEY,
        lambda wait: ollama_error(429, "too many requests", headers={"retry-after": f"{wait:g}"}),
        lambda: ollama_error(401, "unauthorized"),
    ),
    Flavour(
        "gemini",
        FakeGeminiChat,
        lambda s: s.url,
        GEMINI_KEY,
        lambda wait: gemini_error(
            429,
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota.",
            headers={"retry-after": f"{wait:g}"},
        ),
        lambda: gemini_error(
            401, "UNAUTHENTICATED", "Request had invalid authentication credentials."
        ),
    ),
]


@pytest.fixture(params=FLAVOURS, ids=[f.name for f in FLAVOURS])
def flavour(request: pytest.FixtureRequest) -> Flavour:
    f: Flavour = request.param
    return f


@pytest.fixture
def server(flavour: Flavour) -> Iterator[FakeChatServer]:
    with flavour.server() as s:
        yield s
