"""Offline by default: an installed docvec needs no network and no TIKTOKEN_CACHE_DIR.

The machine has no internet; the test also points every proxy variable at a closed port and gives
the process an empty temporary folder (tiktoken's fallback cache lives under it), so nothing
cached by an earlier run or by the test session's own TIKTOKEN_CACHE_DIR can help.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tiktoken

from app.tokens import get_encoding

pytestmark = pytest.mark.slow

DOCVEC = str(Path(sys.executable).parent / "docvec")


def _offline_env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DOCVEC_") and k not in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR")
    }
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env.update(
        HTTP_PROXY=closed,
        HTTPS_PROXY=closed,
        http_proxy=closed,
        https_proxy=closed,
        NO_PROXY="",
        TMPDIR=str(tmp),
        HF_HUB_OFFLINE="1",
        DOCVEC_DATA_DIR=str(tmp_path / "data"),
    )
    return env


def test_ingest_vectorizes_with_no_network_and_no_tiktoken_cache(
    tmp_path: Path, corpus: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(corpus / "text/md/en/fastapi__deployment__docker.md", docs)
    shutil.copy(corpus / "text/txt/rfc1035.txt", docs)
    env = _offline_env(tmp_path)
    run = subprocess.run(
        [DOCVEC, "ingest", str(docs), "--project", "offline", "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    report = json.loads(run.stdout)
    assert len(report["vectorized"]) == 2, report
    assert report["failed"] == [], report
    # tiktoken never wrote a downloaded file into its fallback cache.
    assert not list((tmp_path / "tmp").rglob("*data-gym-cache*/*"))


def test_bundled_encoding_is_tiktokens_own() -> None:
    """The encoding built from the shipped file tokenizes exactly as tiktoken's (the session's
    TIKTOKEN_CACHE_DIR gives tiktoken its own copy of the file)."""
    ours = get_encoding("cl100k_base")
    theirs = tiktoken.get_encoding("cl100k_base")
    texts = [
        "Hello, world! It's 2026 — naïve café, 東京, emoji 🙂.\n\n  indented\ttabs",
        "def f(x):\n    return x ** 2  # comment\r\n",
        "<|endoftext|> is special only when allowed",
        " " * 40 + "trailing spaces   ",
    ]
    for text in texts:
        assert ours.encode(text, disallowed_special=()) == theirs.encode(
            text, disallowed_special=()
        )
        assert ours.encode(text, allowed_special="all") == theirs.encode(
            text, allowed_special="all"
        )
    assert ours.max_token_value == theirs.max_token_value
    assert ours.special_tokens_set == theirs.special_tokens_set


def test_an_unbundled_encoding_offline_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _offline_env(tmp_path)
    env["DOCVEC_CHUNKING__ENCODING"] = "r50k_base"
    run = subprocess.run(
        [DOCVEC, "ingest", str(tmp_path), "--project", "p"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode != 0
    out = run.stdout + run.stderr
    assert "r50k_base" in out and "TIKTOKEN_CACHE_DIR" in out, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
