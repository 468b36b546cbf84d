"""Fixtures of the pipeline tests: chunking in the local model's own tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.config import Settings


@pytest.fixture(scope="session")
def model_tokens() -> tuple[Path, Any]:
    """Chunking in the local model's word pieces, sized to its window: ``(tokenizer.json path,
    a tokenizers.Tokenizer without truncation or padding)`` for independent counts."""
    from tokenizers import Tokenizer

    from app.config import ChunkingSettings
    from app.runtime import model_tokenizer_file

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        chunking=ChunkingSettings(
            unit="model_tokens", chunk_size=254, chunk_overlap=50, min_chunk_size=25
        ),
    )
    path = model_tokenizer_file(settings)
    assert path is not None
    tok = Tokenizer.from_file(str(path))
    tok.no_truncation()
    tok.no_padding()
    return path, tok
