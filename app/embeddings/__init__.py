"""Embedding providers behind one interface (DESIGN §5).

Providers are chosen from configuration (``DOCVEC_EMBEDDING__PROVIDER``) through :data:`PROVIDERS`,
a registry of ``name -> "module:Class"`` imported lazily; each provider imports its SDK only when
it first calls it, so a missing optional SDK makes that provider unavailable (with the reason, see
``docvec providers``) instead of breaking imports.

What only some providers can do is a capability of the provider class, asked through the registry
(:func:`tokenizer_file`, ``provider.reference_encoder()``), not a check of its name elsewhere.

=========  ===============================  ======================  ===============================
provider   SDK                              default model           default server
=========  ===============================  ======================  ===============================
local      sentence-transformers            all-MiniLM-L6-v2        (in process)
openai     openai (+ OpenAI-compatible)     text-embedding-3-small  https://api.openai.com/v1
ollama     ollama                           nomic-embed-text        http://localhost:11434
gemini     google-genai                     gemini-embedding-001    generativelanguage.googleapis
=========  ===============================  ======================  ===============================
"""

from __future__ import annotations

import importlib
from pathlib import Path

from app.config import EmbeddingSettings
from app.embeddings.base import Embedded, EmbeddingProvider, InputKind, Vectors
from app.embeddings.http_helpers import redact
from app.embeddings.usage import EmbeddingUsage
from app.errors import ProviderRejected

PROVIDERS: dict[str, str] = {
    "local": "app.embeddings.local:LocalProvider",
    "openai": "app.embeddings.openai:OpenAIProvider",
    "ollama": "app.embeddings.ollama:OllamaProvider",
    "gemini": "app.embeddings.gemini:GeminiProvider",
}


def provider_class(name: str) -> type[EmbeddingProvider]:
    """The class registered as ``name``.

    Raises:
        ProviderRejected: unknown provider name, or its module cannot be imported.
    """
    target = PROVIDERS.get(name)
    if target is None:
        raise ProviderRejected(
            f"unknown embedding provider {name!r}; choose one of {sorted(PROVIDERS)}"
        )
    module_name, _, cls_name = target.partition(":")
    try:
        cls: type[EmbeddingProvider] = getattr(importlib.import_module(module_name), cls_name)
    except ImportError as exc:
        raise ProviderRejected(f"embedding provider {name!r} is unavailable: {exc}") from exc
    return cls


def create_provider(settings: EmbeddingSettings) -> EmbeddingProvider:
    """The provider named by ``settings.provider``, configured by ``settings``.

    No network call is made here: clients are built, keys read and dimensions probed on first use.

    Raises:
        ProviderRejected: unknown provider, its module cannot be imported, or the settings ask for
            something the model cannot do (e.g. ``dimensions`` on text-embedding-ada-002).
    """
    return provider_class(settings.provider)(settings)


def tokenizer_file(settings: EmbeddingSettings, *, chunk_size: int) -> Path:
    """The configured model's ``tokenizer.json``, for chunks of ``chunk_size`` model tokens,
    found without building the provider or loading the model
    (:meth:`EmbeddingProvider.tokenizer_file` of the configured provider's class).

    Raises:
        ValueError: the provider has no tokenizer here, the model folder has none, or
            ``chunk_size`` does not fit the model's window.
        ProviderRejected: the provider's module cannot be imported.
    """
    return provider_class(settings.provider).tokenizer_file(settings, chunk_size=chunk_size)


__all__ = [
    "PROVIDERS",
    "Embedded",
    "EmbeddingProvider",
    "EmbeddingUsage",
    "InputKind",
    "Vectors",
    "create_provider",
    "provider_class",
    "redact",
    "tokenizer_file",
]
