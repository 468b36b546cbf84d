"""Image embedding providers: pictures and text queries in one vector space, so that an image
document is found by what it shows (README, Images).

Chosen from configuration (``DOCVEC_IMAGE_EMBEDDING__PROVIDER``) through
:data:`IMAGE_PROVIDERS`, a registry of ``name -> "module:Class"`` imported lazily, like the text
providers (:mod:`app.embeddings`); ``none`` (the default) is no provider: image documents are
then found by their OCR text only.

=========  =====================  ==================================  =========================
provider   SDK                    default model                       default server
=========  =====================  ==================================  =========================
local      transformers (+ torch)  the folder DOCVEC_..._MODEL_PATH   (in process)
gemini     google-genai           gemini-embedding-2                  generativelanguage.google
cohere     cohere                 embed-v4.0                          api.cohere.com
=========  =====================  ==================================  =========================
"""

from __future__ import annotations

import importlib

from app.config import ImageEmbeddingSettings
from app.embeddings.images.base import ImageEmbeddingProvider, l2_normalised
from app.errors import ProviderRejected

IMAGE_PROVIDERS: dict[str, str] = {
    "local": "app.embeddings.images.local:LocalImageProvider",
    "gemini": "app.embeddings.images.gemini:GeminiImageProvider",
    "cohere": "app.embeddings.images.cohere:CohereImageProvider",
}


def image_provider_class(name: str) -> type[ImageEmbeddingProvider]:
    """The class registered as ``name``.

    Raises:
        ProviderRejected: unknown provider name, or its module cannot be imported.
    """
    target = IMAGE_PROVIDERS.get(name)
    if target is None:
        raise ProviderRejected(
            f"unknown image embedding provider {name!r}; choose one of "
            f"{['none', *sorted(IMAGE_PROVIDERS)]}"
        )
    module_name, _, cls_name = target.partition(":")
    try:
        cls: type[ImageEmbeddingProvider] = getattr(importlib.import_module(module_name), cls_name)
    except ImportError as exc:
        raise ProviderRejected(f"image embedding provider {name!r} is unavailable: {exc}") from exc
    return cls


def create_image_provider(settings: ImageEmbeddingSettings) -> ImageEmbeddingProvider | None:
    """The provider ``settings.provider`` names, None for ``none``. No model is loaded and no
    server called here.

    Raises:
        ProviderRejected: unknown provider, its module cannot be imported, or settings the model
            cannot honour (an output size it does not offer).
    """
    if settings.provider == "none":
        return None
    return image_provider_class(settings.provider)(settings)


def default_model(settings: ImageEmbeddingSettings) -> str | None:
    """The model an index records for ``settings``: the configured one, else the provider's
    default (the local provider's: its folder's name); None for ``none``."""
    if settings.provider == "none":
        return None
    return image_provider_class(settings.provider).recorded_model(settings) or None


__all__ = [
    "IMAGE_PROVIDERS",
    "ImageEmbeddingProvider",
    "create_image_provider",
    "default_model",
    "image_provider_class",
    "l2_normalised",
]
