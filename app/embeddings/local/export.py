"""Export: a local model rebuilt for a faster engine, checked against torch, cached on disk.

The non-torch backends (:data:`BACKENDS`) run the model's own weights, exported offline the first
time they are used: the torch model is loaded once, traced with ``torch.onnx`` into one graph
(transformer, pooling, L2 normalisation), optimised for the engine (ONNX Runtime's transformer
fusion, int8 dynamic quantization, or OpenVINO IR), and checked against torch on
:data:`PROBES` before it is kept. Exports are cached under ``embedding.model_cache_dir``
(:func:`default_cache_dir` when unset), so every later process loads the exported graph directly,
without importing torch. The cache key covers the model files (path, size, mtime), the backend,
its options and the engine's version; a change to any of them exports again.

sentence-transformers' own ``backend="onnx"`` is not used: it needs ``optimum-onnx``, whose
releases require transformers < 4.58 while sentence-transformers 6 requires transformers >= 5.

Speed and agreement of each backend with torch are measured by ``bench/local_provider.py``
(figures in the README's Performance section).
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from typing_extensions import override

from app.embeddings.local.encoders import (
    MANIFEST,
    Encoder,
    OnnxEncoder,
    OpenVinoEncoder,
    TorchEncoder,
    importable,
    load_sentence_transformer,
    model_dimension,
)
from app.errors import ProviderRejected

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

#: Version of the export layout below; bump it to invalidate every cached export.
EXPORT_FORMAT = 1

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


def default_cache_dir() -> Path:
    """Where exported models are kept when ``embedding.model_cache_dir`` is unset."""
    return Path.home() / ".cache" / "docvec" / "models"


@dataclass(frozen=True)
class Backend:
    """How to build (export) and load one backend.

    ``modules`` are the Python modules it needs at run time; ``export`` (None for torch, which
    needs none) turns the plain FP32 ONNX export in a folder into the engine's files there.
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
    missing = [module for module in spec.modules if not importable(module)]
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

    model = load_sentence_transformer(model_path, num_threads)
    _export_onnx_fp32(model, folder)
    assert spec.export is not None
    try:
        spec.export(folder)
    except ImportError as exc:
        raise ProviderRejected(
            f"local backend {spec.name!r} cannot be exported: {exc.name} is not installed"
        ) from exc
    encoder_cls: Any = spec.encoder
    exported: Encoder = encoder_cls(folder, num_threads)
    reference = TorchEncoder(model).encode(list(PROBES))
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


def _export_onnx_fp32(model: SentenceTransformer, folder: Path) -> None:
    """Write ``model.onnx`` (transformer + pooling + L2 norm), ``tokenizer.json`` and the manifest.

    Raises:
        ProviderRejected: the model is not a plain transformer + pooling (+ normalize) pipeline,
            or its pooling mode or tokenizer cannot be exported.
    """
    import torch

    modules = list(model)
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
        "dimension": int(model_dimension(model)),
        "max_seq_length": int(model.max_seq_length or tokenizer.model_max_length),
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

        @override
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
        for entry in sorted(root.rglob("*")):
            relative = entry.relative_to(root)
            if entry.is_file() and not any(part.startswith(".") for part in relative.parts):
                info = entry.stat()
                parts.append((str(relative), info.st_size, info.st_mtime_ns))
    else:  # a Hub name resolved from the local HF cache: its revision is part of its snapshot
        parts.append(model_path)
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


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
