"""The ``local`` image provider loads a CLIP from a folder through the code users run, and gives
every picture and every query a normalised vector of the model's size, in batches or not.

The model is a tiny randomly initialised CLIP built and saved here (tests/embeddings/images.py):
its vectors mean nothing, but their shapes, their norms and their agreement across batch sizes
are the real model's, and so is every step of loading it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app.config import ImageEmbeddingSettings
from app.embeddings.images import create_image_provider, default_model
from app.embeddings.images.local import LocalImageProvider
from app.embeddings.images.status import clear_probe_cache, image_provider_statuses
from app.errors import ProviderRejected
from tests.embeddings.images import (
    TINY_CLIP_DIM,
    TINY_SIGLIP_DIM,
    build_tiny_clip,
    build_tiny_siglip,
    norm,
    png,
)

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (250, 250, 0), (30, 30, 30)]


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("models") / "tiny-clip")


def make(folder: Path, **kw: object) -> LocalImageProvider:
    provider = create_image_provider(
        ImageEmbeddingSettings(provider="local", model_path=folder, **kw)
    )
    assert isinstance(provider, LocalImageProvider)
    return provider


def test_pictures_and_queries_get_normalised_vectors_of_the_models_size(clip_folder: Path) -> None:
    provider = make(clip_folder, batch_size=2)
    # The size is read from config.json, before any weight is loaded.
    assert provider.known_dimension() == TINY_CLIP_DIM
    assert provider._loaded is None
    assert provider.model == "tiny-clip" == default_model(provider.settings)

    pictures = [png(c, size=(40 + 7 * i, 30 + 5 * i)) for i, c in enumerate(COLOURS)]
    vectors = provider.embed_images(pictures)
    assert len(vectors) == len(pictures)
    assert all(len(v) == TINY_CLIP_DIM for v in vectors)
    assert all(abs(norm(v) - 1.0) < 1e-5 for v in vectors)
    assert len({tuple(round(x, 6) for x in v) for v in vectors}) == len(pictures)

    queries = ["red", "a green running shoe", "blue sky over the sea", "yellow"]
    texts = provider.embed_texts(queries)
    assert [len(v) for v in texts] == [TINY_CLIP_DIM] * len(queries)
    assert all(abs(norm(v) - 1.0) < 1e-5 for v in texts)
    assert provider.embed_query("red") == pytest.approx(texts[0], abs=1e-5)
    assert provider.dimension == TINY_CLIP_DIM


def test_batching_does_not_change_the_vectors(clip_folder: Path) -> None:
    pictures = [png(c) for c in COLOURS]
    queries = ["red shoe", "green", "blue", "a yellow boat", "grey"]
    one_by_one = make(clip_folder, batch_size=1)
    all_at_once = make(clip_folder, batch_size=64)
    for a, b in zip(
        one_by_one.embed_images(pictures), all_at_once.embed_images(pictures), strict=True
    ):
        assert a == pytest.approx(b, abs=1e-5)
    # CLIP's queries are padded to the longest of their batch: the padding must not leak in.
    for a, b in zip(one_by_one.embed_texts(queries), all_at_once.embed_texts(queries), strict=True):
        assert a == pytest.approx(b, abs=1e-5)


def test_a_query_longer_than_the_window_is_cut_not_refused(clip_folder: Path) -> None:
    provider = make(clip_folder)
    long = " ".join(["red"] * 200)  # 600 letter tokens, window 32
    vector = provider.embed_query(long)
    assert len(vector) == TINY_CLIP_DIM
    # Cut to the window: the same as the query cut by hand to well past the window.
    assert vector == pytest.approx(provider.embed_query(" ".join(["red"] * 40)), abs=1e-5)


def test_status_says_available_with_model_and_dimension(clip_folder: Path) -> None:
    clear_probe_cache()
    settings = ImageEmbeddingSettings(provider="local", model_path=clip_folder)
    report = {r.provider: r for r in image_provider_statuses(settings)}
    local = report["local"]
    assert local.configured and local.available, local.reason
    assert local.model == "tiny-clip" and local.dimension == TINY_CLIP_DIM
    assert local.checks["model"] == "ok" and local.checks["probe"].startswith("answered in")
    assert local.model_path == str(clip_folder)
    # The others are listed with their defaults and why they cannot run here.
    assert not report["cohere"].configured and report["cohere"].model == "embed-v4.0"


@pytest.mark.parametrize("case", ["unset", "missing", "no config", "not clip"])
def test_status_says_why_the_model_folder_is_unusable(
    case: str, clip_folder: Path, tmp_path: Path
) -> None:
    clear_probe_cache()
    folder: Path | None = tmp_path / "model"
    if case == "unset":
        folder = None
    elif case == "no config":
        assert folder is not None
        folder.mkdir()
    elif case == "not clip":
        assert folder is not None
        shutil.copytree(clip_folder, folder)
        config = json.loads((folder / "config.json").read_text())
        config["model_type"] = "bert"
        (folder / "config.json").write_text(json.dumps(config))
    settings = ImageEmbeddingSettings(provider="local", model_path=folder)
    local = image_provider_statuses(settings)[0]
    assert local.provider == "local" and not local.available
    expected = {
        "unset": "set DOCVEC_IMAGE_EMBEDDING__MODEL_PATH",
        "missing": "does not exist",
        "no config": "no readable config.json",
        "not clip": "holds a 'bert' model",
    }[case]
    assert local.reason is not None and expected in local.reason
    assert local.checks["model"] != "ok"
    # Embedding fails the same way, as a permanent error naming the problem.
    provider = make(folder) if folder is not None else create_image_provider(settings)
    assert provider is not None
    with pytest.raises(ProviderRejected, match="local image model unavailable"):
        provider.embed_query("red")


def test_none_is_no_provider() -> None:
    assert create_image_provider(ImageEmbeddingSettings()) is None
    assert default_model(ImageEmbeddingSettings()) is None


def test_siglip_with_its_sentencepiece_tokenizer(tmp_path: Path) -> None:
    """SigLIP: a SentencePiece tokenizer (``spiece.model``, needs ``sentencepiece``), no
    projection (its size is the vision tower's width), queries padded to the full window."""
    folder = build_tiny_siglip(tmp_path / "tiny-siglip")
    assert (folder / "spiece.model").is_file()
    provider = make(folder, batch_size=3)
    assert provider.problems() == []
    assert provider.known_dimension() == TINY_SIGLIP_DIM
    vectors = provider.embed_images([png(c) for c in COLOURS])
    assert [len(v) for v in vectors] == [TINY_SIGLIP_DIM] * len(COLOURS)
    assert all(abs(norm(v) - 1.0) < 1e-5 for v in vectors)
    queries = ["red", "a blue running shoe over the sea", "green boat"]
    together = provider.embed_texts(queries)
    for query, vector in zip(queries, together, strict=True):
        assert provider.embed_query(query) == pytest.approx(vector, abs=1e-5)
