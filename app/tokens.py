"""tiktoken encodings, offline: ``cl100k_base`` ships inside the package, others come from tiktoken.

Every chunk records a token count, so the default encoding is needed by every document. tiktoken
downloads its BPE files on first use, which an air-gapped install cannot do; docvec carries
``cl100k_base`` (1.7 MB, ``app/assets/tiktoken``, checked against tiktoken's own expected SHA-256)
and builds the encoding from it with the pattern and special tokens of tiktoken's
``tiktoken_ext/openai_public.py``. Other encodings go through ``tiktoken.get_encoding`` (set
``TIKTOKEN_CACHE_DIR`` to a folder holding their files when offline).
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from pathlib import Path

import tiktoken

#: Folder of the bundled BPE files.
ASSETS = Path(__file__).resolve().parent / "assets" / "tiktoken"

# From tiktoken 0.14.0's tiktoken_ext/openai_public.py, cl100k_base(): the split pattern, the
# special tokens and the file's expected SHA-256. A test checks the result against tiktoken's own.
_CL100K_PAT = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_CL100K_SPECIAL = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}
_CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"

#: Encodings docvec can load with no network.
BUNDLED = ("cl100k_base",)


def _bundled_cl100k() -> tiktoken.Encoding:
    data = (ASSETS / "cl100k_base.tiktoken").read_bytes()
    if hashlib.sha256(data).hexdigest() != _CL100K_SHA256:
        raise ValueError(f"{ASSETS / 'cl100k_base.tiktoken'} is damaged (SHA-256 mismatch)")
    ranks = {
        base64.b64decode(token): int(rank)
        for token, rank in (line.split() for line in data.splitlines() if line)
    }
    return tiktoken.Encoding(
        name="cl100k_base",
        pat_str=_CL100K_PAT,
        mergeable_ranks=ranks,
        special_tokens=_CL100K_SPECIAL,
    )


@cache
def get_encoding(name: str) -> tiktoken.Encoding:
    """The tiktoken encoding ``name``, loaded once per process.

    Raises:
        ValueError: ``name`` is not an encoding tiktoken knows, or it is not bundled and
            tiktoken could not fetch its file (no network and no ``TIKTOKEN_CACHE_DIR``); the
            message names the remedy.
    """
    if name == "cl100k_base":
        return _bundled_cl100k()
    if name not in tiktoken.list_encoding_names():
        raise ValueError(
            f"unknown tiktoken encoding {name!r}; known: {tiktoken.list_encoding_names()}"
        )
    try:
        return tiktoken.get_encoding(name)
    except Exception as exc:  # requests' ConnectionError, a bad hash, a read error
        raise ValueError(
            f"tiktoken encoding {name!r} could not be loaded ({type(exc).__name__}: {exc}); "
            f"docvec ships only {', '.join(BUNDLED)}: offline, set TIKTOKEN_CACHE_DIR to a "
            "folder holding its file, or use DOCVEC_CHUNKING__ENCODING=cl100k_base"
        ) from exc
