"""Helpers of the image-vector tests: a tiny randomly initialised CLIP saved like a real one, a
deterministic image provider whose image and text vectors agree by construction (the dominant
colour of a picture, the colour words of a query), and pictures to feed them.

No weights are ever downloaded: the CLIP is built from a config here, its byte-level BPE
tokenizer from a vocabulary of single letters written here, and saved with ``save_pretrained``,
so the provider loads it through the very code users run (``AutoModel``/``AutoProcessor`` from a
folder, ``local_files_only``).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from PIL import Image, ImageDraw, ImageFont
from typing_extensions import override

from app.config import ImageEmbeddingSettings
from app.embeddings.images.base import ImageEmbeddingProvider

#: Output size of the tiny CLIP (both towers project to it).
TINY_CLIP_DIM = 24
#: Its text window, tokens (CLIP's is 77; small here so truncation is exercised).
TINY_CLIP_WINDOW = 32


def build_tiny_clip(folder: Path, *, seed: int = 0) -> Path:
    """A CLIP with two layers of width 32 per tower, 32-pixel images in 8-pixel patches and a
    24-dimensional projection, randomly initialised (``seed``), saved to ``folder`` with its
    processor (image processor and tokenizer)."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in letters:
        vocab[c] = len(vocab)
    for c in letters:
        vocab[c + "</w>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    layers = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2}
    config = CLIPConfig(
        text_config={
            **layers,
            "num_attention_heads": 4,
            "vocab_size": len(vocab),
            "max_position_embeddings": TINY_CLIP_WINDOW,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={**layers, "num_attention_heads": 4, "image_size": 32, "patch_size": 8},
        projection_dim=TINY_CLIP_DIM,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config)
    processor = CLIPProcessor(  # type: ignore[no-untyped-call]
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        ),
        tokenizer=tokenizer,
    )
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


#: Output size of the tiny SigLIP (its vision tower's width: SigLIP has no projection).
TINY_SIGLIP_DIM = 32


def build_tiny_siglip(folder: Path, *, seed: int = 0) -> Path:
    """A SigLIP of width 32 with a SentencePiece tokenizer trained here on a few sentences (the
    ``spiece.model`` a real SigLIP folder holds), a 16-token text window, saved to ``folder``."""
    import sentencepiece as spm
    import torch
    from transformers import (
        SiglipConfig,
        SiglipImageProcessor,
        SiglipModel,
        SiglipProcessor,
        SiglipTokenizer,
    )

    folder.mkdir(parents=True, exist_ok=True)
    words = [
        "red",
        "green",
        "blue",
        "yellow",
        "shoe",
        "car",
        "sky",
        "sea",
        "boat",
        "a",
        "the",
        "running",
        "over",
    ]
    sentences = [" ".join(words[i:] + words[:i]) for i in range(len(words))] * 20
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_prefix=str(folder / "spiece"),
        vocab_size=32,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        minloglevel=2,
    )
    tokenizer = SiglipTokenizer(vocab_file=str(folder / "spiece.model"), model_max_length=16)
    layers = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2}
    config = SiglipConfig(
        text_config={
            **layers,
            "num_attention_heads": 4,
            "vocab_size": 32,
            "max_position_embeddings": 16,
            "bos_token_id": None,
            "eos_token_id": 1,
            "pad_token_id": 0,
        },
        vision_config={**layers, "num_attention_heads": 4, "image_size": 32, "patch_size": 8},
    )
    torch.manual_seed(seed)
    model = SiglipModel(config)
    processor = SiglipProcessor(  # type: ignore[no-untyped-call]
        image_processor=SiglipImageProcessor(size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


# ---- colours --------------------------------------------------------------------------------
#: Colour words and their direction in the colour space (red, green, blue).
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
}
#: A small constant on a fourth axis: no vector is ever zero (a colourless query or a grey
#: picture still has a direction).
_FLOOR = 0.05


def picture_colour(data: bytes) -> list[float]:
    """The dominant colour of a picture as a 4-dimensional vector: the mean of each channel
    less the smallest mean (grey and white add nothing), plus the floor axis."""
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB").resize((16, 16))
        raw = rgb.tobytes()
    n = len(raw) // 3
    means = [sum(raw[i::3]) / n / 255 for i in range(3)]
    low = min(means)
    return [m - low for m in means] + [_FLOOR]


def text_colour(text: str) -> list[float]:
    """The colour words of ``text`` summed in the same space (the floor axis for none)."""
    vector = [0.0, 0.0, 0.0, _FLOOR]
    for word in text.lower().replace(",", " ").split():
        for i, x in enumerate(COLOURS.get(word, (0.0, 0.0, 0.0))):
            vector[i] += x
    return vector


class ColourImageProvider(ImageEmbeddingProvider):
    """A deterministic image model: a picture's dominant colour and a query's colour words land
    on the same axes, so "red" finds the red picture first. Counts its calls."""

    name: ClassVar[str] = "local"
    label: ClassVar[str] = "The colour test model"
    max_images_per_request: ClassVar[int] = 4

    def __init__(self, settings: ImageEmbeddingSettings | None = None) -> None:
        super().__init__(settings or ImageEmbeddingSettings(provider="local", model="colours"))
        self.image_calls: list[int] = []
        self.text_calls: list[int] = []

    @override
    def _embed_images(self, pictures: list[bytes]) -> list[list[float]]:
        self.image_calls.append(len(pictures))
        return [picture_colour(p) for p in pictures]

    @override
    def _embed_texts(self, texts: list[str]) -> list[list[float]]:
        self.text_calls.append(len(texts))
        return [text_colour(t) for t in texts]

    @override
    def _load_dimension(self) -> int:
        return 4


def png(colour: tuple[int, int, int], size: tuple[int, int] = (64, 48), text: str = "") -> bytes:
    """A PNG of one colour, with ``text`` in black in large letters if given."""
    image = Image.new("RGB", size, colour)
    if text:
        draw = ImageDraw.Draw(image)
        font = ImageFont.load_default(size=40)
        draw.text((20, 20), text, fill=(0, 0, 0), font=font)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def norm(vector: Sequence[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))
