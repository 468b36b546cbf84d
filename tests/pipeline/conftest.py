"""Fixtures of the pipeline tests: a runtime on the embedded defaults with the real model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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
