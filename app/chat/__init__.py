"""Chat providers behind one interface: they write the answer to a question from numbered sources
(``docvec ask``, ``POST /projects/{id}/answer``; the prompt and the citations are
``app/answers/``).

Providers are chosen from configuration (``DOCVEC_CHAT__PROVIDER``) through
:data:`CHAT_PROVIDERS`, a registry of ``name -> "module:Class"`` imported lazily; each imports its
SDK only when it first calls it, so a missing SDK makes that provider unavailable (with the reason,
see ``docvec providers``) instead of breaking imports. ``base.py`` holds the shared shape (client,
key, limiter, retries, error mapping); each provider module only its SDK calls.

==========  ============================  ================  ====================================
provider    SDK / API                     default model     default server
==========  ============================  ================  ====================================
extractive  none: quotes source sentences  —                 (in process)
openai      openai, Chat Completions      gpt-4o-mini       https://api.openai.com/v1 (or any
                                                            OpenAI-compatible ``base_url``)
ollama      ollama, ``/api/chat``          llama3.2          http://localhost:11434
gemini      google-genai, generateContent  gemini-2.5-flash  generativelanguage.googleapis.com
==========  ============================  ================  ====================================

Layer: above ``app.embeddings`` (it reuses its HTTP helpers, redaction and rate limiter), below the
services; ``tests/test_layers.py`` keeps it so.
"""

from __future__ import annotations

import importlib

from app.chat.base import ChatPrompt, ChatProvider, ChatUsage, PromptSource, RemoteChatProvider
from app.config import ChatSettings
from app.errors import ProviderRejected

CHAT_PROVIDERS: dict[str, str] = {
    "extractive": "app.chat.extractive:ExtractiveChat",
    "openai": "app.chat.openai:OpenAIChat",
    "ollama": "app.chat.ollama:OllamaChat",
    "gemini": "app.chat.gemini:GeminiChat",
}


def chat_provider_class(name: str) -> type[ChatProvider]:
    """The class registered as ``name``.

    Raises:
        ProviderRejected: unknown provider name, or its module cannot be imported.
    """
    target = CHAT_PROVIDERS.get(name)
    if target is None:
        raise ProviderRejected(
            f"unknown chat provider {name!r}; choose one of {sorted(CHAT_PROVIDERS)}"
        )
    module_name, _, cls_name = target.partition(":")
    try:
        cls: type[ChatProvider] = getattr(importlib.import_module(module_name), cls_name)
    except ImportError as exc:
        raise ProviderRejected(f"chat provider {name!r} is unavailable: {exc}") from exc
    return cls


def create_chat_provider(settings: ChatSettings) -> ChatProvider:
    """The provider named by ``settings.provider``, configured by ``settings``; no network call
    is made here (clients are built and keys read on first use).

    Raises:
        ProviderRejected: unknown provider, or its module cannot be imported.
    """
    return chat_provider_class(settings.provider)(settings)


__all__ = [
    "CHAT_PROVIDERS",
    "ChatPrompt",
    "ChatProvider",
    "ChatUsage",
    "PromptSource",
    "RemoteChatProvider",
    "chat_provider_class",
    "create_chat_provider",
]
