"""Fixtures of the pipeline tests: a runtime on the embedded defaults with the real model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from app.db import migrate
from app.runtime import Runtime


@pytest.fixture
def rt(tmp_path: Path, local_provider) -> Iterator[Runtime]:  # type: ignore[no-untyped-def]
    """SQLite and Qdrant Edge under ``tmp_path/data``, migrated, with the session's local model."""
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")  # type: ignore[call-arg]
    migrate.upgrade(settings.sqlalchemy_url)
    runtime = Runtime(settings, provider=local_provider)
    yield runtime
    runtime.close()


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
