"""Encoders: one loaded local model, texts in, L2-normalised float32 vectors out.

:class:`TorchEncoder` runs the model as sentence-transformers ships it (PyTorch FP32) and is the
reference every other engine is held to. The exported engines, :class:`OnnxEncoder` (ONNX Runtime)
and :class:`OpenVinoEncoder` (OpenVINO), run a graph that ``export.py`` wrote — transformer,
pooling and L2 normalisation in one — fed by the model's own ``tokenizer.json`` through Hugging
Face ``tokenizers`` with sentence-transformers' policy (strip, lowercase if the model says so,
truncate to ``max_seq_length``, pad to the longest in the batch). They import neither torch nor
sentence-transformers, so a process that loads an exported model starts faster and smaller.

Every engine is imported inside the method that needs it: this module imports without any.
"""

from __future__ import annotations

import importlib.util
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from typing_extensions import override

from app.errors import ProviderRejected

if TYPE_CHECKING:
    import numpy as np
    from sentence_transformers import SentenceTransformer

#: File in an export folder describing it (dimension, window, tokenizer padding, graph inputs);
#: written by ``export.py``, read by the exported encoders. Its presence marks a finished export.
MANIFEST = "docvec-export.json"


class Encoder(ABC):
    """One loaded model: texts in, L2-normalised float32 vectors out (``n`` x ``dimension``)."""

    backend: ClassVar[str]
    dimension: int
    max_seq_length: int

    @abstractmethod
    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` in one forward pass."""

    def encode_counted(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        """:meth:`encode`, and the positions of the inputs longer than ``max_seq_length`` word
        pieces (special tokens included), which the model truncated."""
        return self.encode(texts), self.overlong(texts)

    def overlong(self, texts: list[str]) -> list[int]:
        """Positions of ``texts`` longer than the model's window (tokenizes them once more)."""
        return []


#: Exported engines pad a batch's length up to a multiple of this many tokens. OpenVINO keeps
#: memory for every input shape it has run, so with exact longest-in-batch lengths its resident
#: memory grew with the distinct lengths seen (+77 MiB from 100 to 1,500 chunks of one text);
#: in steps of 8 a 256-token window has 32 lengths. The padded positions are masked out, so the
#: vectors do not change (tests/embeddings/test_local_backends.py holds every engine to torch).
PAD_TO_MULTIPLE_OF = 8


class TorchEncoder(Encoder):
    """sentence-transformers with PyTorch, FP32: the reference every other backend is held to."""

    backend = "torch"

    def __init__(self, model: SentenceTransformer) -> None:
        self.model = model
        self.dimension = int(model_dimension(model))
        self.max_seq_length = int(model.max_seq_length or 0)

    @classmethod
    def load(cls, model_path: str, num_threads: int | None) -> TorchEncoder:
        return cls(load_sentence_transformer(model_path, num_threads))

    @override
    def overlong(self, texts: list[str]) -> list[int]:
        # The torch path tokenizes inside sentence-transformers; count here, without truncation.
        stripped = [t.strip() for t in texts]
        ids = self.model.tokenizer(stripped, truncation=False, verbose=False)["input_ids"]
        return [i for i, row in enumerate(ids) if len(row) > self.max_seq_length]

    @override
    def encode(self, texts: list[str]) -> np.ndarray:
        vectors: np.ndarray = self.model.encode(
            texts,
            batch_size=max(1, len(texts)),
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors


class ExportedEncoder(Encoder):
    """An exported graph (pooling and normalisation inside) fed by the model's fast tokenizer."""

    def __init__(self, folder: Path, num_threads: int | None) -> None:
        from tokenizers import Tokenizer

        manifest = json.loads((folder / MANIFEST).read_text("utf-8"))
        self.folder = folder
        self.manifest = manifest
        self.dimension = int(manifest["dimension"])
        self.max_seq_length = int(manifest["max_seq_length"])
        self.do_lower_case = bool(manifest.get("do_lower_case", False))
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        # tokenizer.json may carry its own fixed padding/truncation (128 for MiniLM's): replace
        # them with sentence-transformers' policy, longest-in-batch padding and max_seq_length.
        tokenizer.no_padding()
        tokenizer.no_truncation()
        tokenizer.enable_truncation(max_length=self.max_seq_length)
        tokenizer.enable_padding(
            pad_id=int(manifest["pad_id"]),
            pad_token=str(manifest["pad_token"]),
            pad_to_multiple_of=PAD_TO_MULTIPLE_OF,
        )
        self.tokenizer = tokenizer
        self.input_names: list[str] = list(manifest["input_names"])
        self._load_engine(folder, num_threads)

    @abstractmethod
    def _load_engine(self, folder: Path, num_threads: int | None) -> None:
        """Load the engine's graph from ``folder`` (``num_threads`` intra-op, None: its default)."""

    @abstractmethod
    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The graph on ``feeds`` (int64, ``n`` x ``seq``): ``n`` x ``dimension`` float32."""

    def tokenize(self, texts: list[str]) -> tuple[dict[str, np.ndarray], list[int]]:
        """The graph's inputs for ``texts`` (int64, padded to the longest in the batch), and the
        positions of the inputs that truncation to ``max_seq_length`` cut."""
        import numpy as np

        # sentence-transformers strips each text and lowercases it when the model says so.
        prepared = [t.strip() for t in texts]
        if self.do_lower_case:
            prepared = [t.lower() for t in prepared]
        encodings = self.tokenizer.encode_batch(prepared)
        fields = {
            "input_ids": "ids",
            "attention_mask": "attention_mask",
            "token_type_ids": "type_ids",
        }
        feeds = {
            name: np.array([getattr(e, fields[name]) for e in encodings], dtype=np.int64)
            for name in self.input_names
        }
        # Truncation keeps what it cut in ``overflowing``: the count costs nothing extra.
        return feeds, [i for i, e in enumerate(encodings) if e.overflowing]

    @override
    def encode(self, texts: list[str]) -> np.ndarray:
        return self._run(self.tokenize(texts)[0])

    @override
    def encode_counted(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        feeds, cut = self.tokenize(texts)
        return self._run(feeds), cut


class OnnxEncoder(ExportedEncoder):
    """ONNX Runtime on the CPU (FP32 or int8 graph)."""

    backend = "onnx"

    @override
    def _load_engine(self, folder: Path, num_threads: int | None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        # 0 = one thread per physical core (ONNX Runtime's default); one graph, no inter-op pool.
        opts.intra_op_num_threads = num_threads or 0
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(folder / "model.onnx"), opts, providers=["CPUExecutionProvider"]
        )

    @override
    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        # InferenceSession.run is thread-safe.
        out: np.ndarray = self.session.run(None, feeds)[0]
        return out


class OpenVinoEncoder(ExportedEncoder):
    """OpenVINO runtime on the CPU, FP32."""

    backend = "openvino"

    @override
    def _load_engine(self, folder: Path, num_threads: int | None) -> None:
        import openvino as ov

        core = ov.Core()
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": "LATENCY",
            # CPUs with bf16 units would otherwise run in bf16 and drift from torch FP32.
            "INFERENCE_PRECISION_HINT": "f32",
        }
        if num_threads:
            config["INFERENCE_NUM_THREADS"] = num_threads
        self.compiled = core.compile_model(str(folder / "model.xml"), "CPU", config)

    @override
    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        # One infer request per call: a request is not thread-safe, the compiled model is.
        request = self.compiled.create_infer_request()
        result = request.infer(feeds)
        out: np.ndarray = result[self.compiled.output(0)]
        return out.copy()


def importable(module: str) -> bool:
    """True if ``module`` can be found (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def load_sentence_transformer(model_path: str, num_threads: int | None) -> SentenceTransformer:
    """The sentence-transformers model at ``model_path`` on the CPU, offline; ``num_threads``
    sets torch's intra-op threads (None: torch's default).

    Raises:
        ProviderRejected: torch or sentence-transformers is not installed, or the model is not
            available without a download.
    """
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ProviderRejected(f"local provider unavailable: {exc.name} is not installed") from exc
    if num_threads:
        torch.set_num_threads(num_threads)
    try:
        return SentenceTransformer(model_path, device="cpu", local_files_only=True)
    except OSError as exc:
        raise ProviderRejected(
            f"local model {model_path!r} is not available offline: {exc}"
        ) from exc


def model_dimension(model: SentenceTransformer) -> int:
    """The output size of a loaded sentence-transformers model.

    Raises:
        ProviderRejected: the model does not report one.
    """
    # get_embedding_dimension is the newer name; older releases have only the long one.
    getter = (
        getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    )
    dim = getter()
    if not dim:
        raise ProviderRejected("the local model does not report its dimension")
    return int(dim)
