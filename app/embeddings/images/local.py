"""The ``local`` image provider: a CLIP or SigLIP model from a folder the user names, run in this
process by Hugging Face ``transformers`` (``AutoModel`` + ``AutoProcessor``, the folder as
``save_pretrained`` writes it). Nothing is downloaded: the folder is opened with
``local_files_only=True``, and a missing or incomplete folder is reported by ``docvec providers``
with what is missing.

Both towers come from the one model: pictures through ``get_image_features``, search queries
through ``get_text_features``, so a text query lands in the pictures' space. SigLIP was trained
on texts padded to the full 64 positions, so its queries are padded to ``max_length``; CLIP's are
padded to the longest in the batch. Either is cut to the text tower's
``max_position_embeddings`` tokens (77 for CLIP, 64 for SigLIP).

SigLIP's tokenizer is SentencePiece (``spiece.model``): it needs the ``sentencepiece`` package,
which docvec declares (one seed report's SigLIP embedder never loaded for want of it).
"""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from typing_extensions import override

from app.config import ImageEmbeddingSettings
from app.embeddings.images.base import ImageEmbeddingProvider
from app.errors import ProviderRejected

if TYPE_CHECKING:
    import torch

#: ``model_type`` of the image-text models this provider runs (config.json).
MODEL_TYPES = ("clip", "siglip", "siglip2")
#: Model types whose text tower was trained on inputs padded to its full length.
_PAD_TO_MAX = ("siglip", "siglip2")


class LocalImageProvider(ImageEmbeddingProvider):
    """CLIP or SigLIP from ``DOCVEC_IMAGE_EMBEDDING__MODEL_PATH``, on the CPU."""

    name: ClassVar[str] = "local"
    label: ClassVar[str] = "The local image model"
    sdk_modules: ClassVar[tuple[str, ...]] = ("transformers", "torch", "PIL")
    sdk_package: ClassVar[str] = "transformers torch pillow"
    #: Pictures per forward pass: memory, not an API, is the limit (a ViT-B/32 batch of 64 at
    #: 224 pixels needs well under 1 GiB).
    max_images_per_request: ClassVar[int] = 64
    max_texts_per_request: ClassVar[int] = 256

    def __init__(self, settings: ImageEmbeddingSettings) -> None:
        super().__init__(settings)
        self.path: Path | None = settings.model_path
        self._loaded: tuple[Any, Any, dict[str, Any]] | None = None
        self._load_lock = threading.Lock()

    @classmethod
    @override
    def recorded_model(cls, settings: ImageEmbeddingSettings) -> str:
        """The configured name, else the model folder's name."""
        if settings.model:
            return settings.model
        return settings.model_path.name if settings.model_path is not None else ""

    # ---- the folder ---------------------------------------------------------------------------
    def _config(self) -> dict[str, Any] | None:
        """The folder's config.json, None when there is none (or it is not JSON)."""
        if self.path is None:
            return None
        try:
            data = json.loads((self.path / "config.json").read_text("utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _folder_problems(self) -> list[str]:
        if self.path is None:
            return [
                "no model folder: set DOCVEC_IMAGE_EMBEDDING__MODEL_PATH to a CLIP or SigLIP "
                "model saved with save_pretrained"
            ]
        if not self.path.is_dir():
            return [f"model folder {self.path} does not exist"]
        config = self._config()
        if config is None:
            return [f"model folder {self.path} has no readable config.json"]
        kind = config.get("model_type")
        if kind not in MODEL_TYPES:
            return [
                f"model folder {self.path} holds a {kind!r} model; the local image provider "
                f"runs {', '.join(MODEL_TYPES)}"
            ]
        found: list[str] = []
        if (self.path / "spiece.model").is_file() and not (self.path / "tokenizer.json").is_file():
            import importlib.util

            if importlib.util.find_spec("sentencepiece") is None:
                found.append(
                    "the model's tokenizer is SentencePiece (spiece.model): pip install "
                    "sentencepiece"
                )
        return found

    @override
    def problems(self) -> list[str]:
        return super().problems() + self._folder_problems()

    @override
    def known_dimension(self) -> int | None:
        if self._dimension is not None:
            return self._dimension
        config = self._config()
        if config is None:
            return None
        # CLIP projects both towers to projection_dim; SigLIP's image embedding is the vision
        # tower's pooled output (its hidden size, equal to the text tower's).
        size = config.get("projection_dim")
        if size is None or config.get("model_type") in _PAD_TO_MAX:
            size = (config.get("vision_config") or {}).get("hidden_size")
        return int(size) if isinstance(size, int) else None

    @override
    def _load_dimension(self) -> int:
        return self.known_dimension() or len(self._embed_texts(["dimension probe"])[0])

    # ---- the model ----------------------------------------------------------------------------
    def _model(self) -> tuple[Any, Any, dict[str, Any]]:
        """``(model, processor, config)``, loaded once.

        Raises:
            ProviderRejected: the folder is missing or incomplete, or transformers cannot read it.
        """
        with self._load_lock:
            if self._loaded is None:
                problems = self.problems()
                if problems:
                    raise ProviderRejected("local image model unavailable: " + "; ".join(problems))
                assert self.path is not None
                from transformers import AutoModel, AutoProcessor

                try:
                    model = AutoModel.from_pretrained(self.path, local_files_only=True)
                    processor = AutoProcessor.from_pretrained(self.path, local_files_only=True)  # type: ignore[no-untyped-call]
                except (OSError, ValueError) as exc:
                    raise ProviderRejected(
                        f"local image model {self.path} cannot be loaded: {exc}"
                    ) from None
                model.eval()
                self._loaded = (model, processor, self._config() or {})
            return self._loaded

    @staticmethod
    def _features(output: Any) -> torch.Tensor:
        """The embedding tensor of ``get_*_features``: transformers 4 returns it, 5 returns a
        model output whose ``pooler_output`` holds it."""
        import torch

        if isinstance(output, torch.Tensor):
            return output
        pooled = getattr(output, "pooler_output", None)
        if not isinstance(pooled, torch.Tensor):
            raise ProviderRejected("the local image model returned no embedding tensor")
        return pooled

    @override
    def _embed_images(self, pictures: list[bytes]) -> list[list[float]]:
        import torch
        from PIL import Image

        model, processor, _ = self._model()
        images = []
        for data in pictures:
            with Image.open(io.BytesIO(data)) as picture:
                images.append(picture.convert("RGB"))
        inputs = processor(images=images, return_tensors="pt")
        with torch.inference_mode():
            features = self._features(model.get_image_features(**inputs))
        return [[float(x) for x in row] for row in features.tolist()]

    @override
    def _embed_texts(self, texts: list[str]) -> list[list[float]]:
        import torch

        model, processor, config = self._model()
        text_config = config.get("text_config") or {}
        # CLIP's default window; SigLIP's folders state theirs.
        window = int(text_config.get("max_position_embeddings") or 77)
        padding: bool | str = "max_length" if config.get("model_type") in _PAD_TO_MAX else True
        inputs = processor(
            text=texts,
            return_tensors="pt",
            padding=padding,
            truncation=True,
            max_length=window,
        )
        with torch.inference_mode():
            features = self._features(model.get_text_features(**inputs))
        return [[float(x) for x in row] for row in features.tolist()]
