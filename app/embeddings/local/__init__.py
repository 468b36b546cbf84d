"""The ``local`` provider: a sentence-transformers model on this machine's CPU, offline, on one of
several engines that run the same weights.

::

    LocalProvider                   provider.py   the provider: model path, known dimensions,
    │                                             lazy load, truncation counts, capabilities
    ├── load_encoder(backend)       export.py     BACKENDS table; exports on first use, checks
    │   │                                         the export against torch, caches it on disk
    │   └── exported_model()        export.py     cache folder, key, one export at a time
    └── Encoder                     encoders.py   TorchEncoder (the reference), OnnxEncoder,
                                                  OpenVinoEncoder: texts in, vectors out

=========  =====================================================
backend    engine
=========  =====================================================
torch      sentence-transformers as it ships (PyTorch FP32)
onnx       ONNX Runtime FP32, attention/LayerNorm/GELU fused
onnx-int8  ONNX Runtime dynamic int8 (FFN down-projections FP32)
openvino   OpenVINO FP32 (the default)
=========  =====================================================

Why several: an exported engine loads without torch (a worker starts faster and smaller) and runs
faster on a CPU, with vectors that agree with torch's; ``bench/local_provider.py`` measures speed
and agreement (figures in the README's Performance section).

The public names are re-exported here; import them from ``app.embeddings.local``. The modules
import one another in one direction (encoders ← export ← provider).
"""

from app.embeddings.local.encoders import (
    MANIFEST,
    Encoder,
    OnnxEncoder,
    OpenVinoEncoder,
    TorchEncoder,
)
from app.embeddings.local.export import (
    BACKENDS,
    Backend,
    default_cache_dir,
    exported_model,
    load_encoder,
)
from app.embeddings.local.provider import KNOWN_DIMENSIONS, LocalProvider, resolve_model_path

__all__ = [
    "BACKENDS",
    "KNOWN_DIMENSIONS",
    "MANIFEST",
    "Backend",
    "Encoder",
    "LocalProvider",
    "OnnxEncoder",
    "OpenVinoEncoder",
    "TorchEncoder",
    "default_cache_dir",
    "exported_model",
    "load_encoder",
    "resolve_model_path",
]
