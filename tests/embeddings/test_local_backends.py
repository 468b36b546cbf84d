"""The local provider's backends against torch FP32, on real corpus chunks.

Each backend whose engine is installed is exported (once; the export is cached in the user's
model cache like in real use) and must give the same vectors as sentence-transformers' torch
model on the same inputs: cosine >= 0.9999 for the FP32 engines; for int8, >= 0.99 on the real
chunks and >= 0.97 on the synthetic edge cases (quantization approximates;
``bench/local_provider.py`` measures more).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from app.config import EmbeddingSettings
from app.embeddings.local import (
    BACKENDS,
    MANIFEST,
    LocalProvider,
    exported_model,
    resolve_model_path,
)
from app.embeddings.local.encoders import importable as _importable
from app.pipeline.chunk import Chunker
from app.pipeline.extract import extract

EXPORTED = [b for b in BACKENDS if b != "torch"]
#: Inputs where tokenisation details show: surrounding whitespace, case, one character, emoji,
#: CJK, and one far longer than the 256-token window (truncation must match).
EDGE_CASES = [
    "  Leading and trailing whitespace\n",
    "UPPER CASE and lower case",
    "x",
    "emoji 🎉 and accents: déjà vu, naïve café",
    "東京は日本の首都です。",
    "word " * 600,
]


def _available(backend: str) -> bool:
    return all(_importable(m) for m in BACKENDS[backend].modules)


@pytest.fixture(scope="module")
def chunks(corpus: Path) -> list[str]:
    """24 real chunks (prose, technical Markdown, Spanish, Russian) and the edge cases."""
    chunker = Chunker()
    out: list[str] = []
    for rel in (
        "text/txt/book-war-and-peace-1225p.txt",
        "text/md/en/fastapi__deployment__docker.md",
        "text/md/es/fastapi__async.md",
        "text/md/i18n/the-art-of-command-line__README-ru.md",
    ):
        path = corpus / rel
        text = extract(path.read_bytes(), path.name).text[:40_000]
        out.extend(c.text for c in chunker.split(text)[:6])
    return out + EDGE_CASES


@pytest.fixture(scope="module")
def torch_vectors(chunks: list[str]) -> np.ndarray:
    provider = LocalProvider(EmbeddingSettings(backend="torch"))
    return np.asarray(provider.embed_documents(chunks), dtype=np.float32)


@pytest.mark.parametrize("backend", EXPORTED)
def test_backend_agrees_with_torch(
    backend: str, chunks: list[str], torch_vectors: np.ndarray
) -> None:
    if not _available(backend):
        pytest.skip(f"{backend}: {BACKENDS[backend].modules} not installed")
    provider = LocalProvider(EmbeddingSettings(backend=backend))
    vectors = np.asarray(provider.embed_documents(chunks), dtype=np.float32)

    assert vectors.shape == torch_vectors.shape == (len(chunks), provider.dimension)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    cosine = np.sum(vectors * torch_vectors, axis=1)
    real, edge = cosine[: -len(EDGE_CASES)], cosine[-len(EDGE_CASES) :]
    if backend == "onnx-int8":
        assert real.min() >= 0.99, real
        assert edge.min() >= 0.97, edge  # one character or 600 repeats: far from real text
    else:
        assert cosine.min() >= 0.9999, cosine
    assert provider.max_seq_length == 256
    assert provider.describe()["backend"] == backend
    # A query goes through the same graph.
    query = np.asarray(provider.embed_query(chunks[0]))
    assert float(query @ torch_vectors[0]) >= (0.97 if backend == "onnx-int8" else 0.9999)


@pytest.mark.parametrize("backend", [b for b in EXPORTED if b != "onnx-int8"])
def test_exported_backend_loads_without_torch(backend: str) -> None:
    """Once exported, a process embeds without importing torch (faster start, less memory)."""
    if not _available(backend):
        pytest.skip(f"{backend} not installed")
    LocalProvider(EmbeddingSettings(backend=backend)).embed_query("export first")
    code = (
        "import sys\n"
        "from app.config import EmbeddingSettings\n"
        "from app.embeddings.local import LocalProvider\n"
        f"p = LocalProvider(EmbeddingSettings(backend={backend!r}))\n"
        "assert len(p.embed_query('hello')) == 384\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.slow
def test_concurrent_exports_end_with_one_folder(tmp_path: Path) -> None:
    """Workers starting together each export; the first rename wins, the others clean up."""
    if not _available("onnx"):
        pytest.skip("onnxruntime not installed")
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from app.embeddings.local import exported_model, resolve_model_path\n"
        "model = resolve_model_path('all-MiniLM-L6-v2')\n"
        "print(exported_model(model, 'onnx', cache_dir=Path(sys.argv[1]), model_name='m'))\n"
    )
    repo = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)],
            cwd=repo,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    found = {out.strip().splitlines()[-1] for out, _ in outs}
    assert len(found) == 1
    folder = Path(found.pop())
    assert (folder / MANIFEST).is_file()
    assert [p.name for p in (tmp_path / "m").iterdir()] == [folder.name]


def test_export_runs_once_and_is_cached(tmp_path: Path) -> None:
    """Threads wait for the first export (torch.onnx.export is not thread-safe) and reuse it;
    later calls find it in the cache."""
    if not _available("onnx"):
        pytest.skip("onnxruntime not installed")
    model = resolve_model_path("all-MiniLM-L6-v2")
    found: list[Path] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            found.append(exported_model(model, "onnx", cache_dir=tmp_path, model_name="m"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(found)) == 1
    first = found[0]
    assert [p.name for p in (tmp_path / "m").iterdir()] == [first.name]  # no temp leftovers
    assert first.name.startswith("onnx-")
    assert (first / MANIFEST).is_file()
    # Cached: a later call returns the same folder without exporting again.
    stamp = (first / "model.onnx").stat().st_mtime_ns
    assert exported_model(model, "onnx", cache_dir=tmp_path, model_name="m") == first
    assert (first / "model.onnx").stat().st_mtime_ns == stamp


def test_backend_is_a_validated_setting() -> None:
    assert EmbeddingSettings(backend="openvino").backend == "openvino"
    with pytest.raises(ValidationError):
        EmbeddingSettings(backend="tensorrt")  # type: ignore[arg-type]
