"""Tests of the chunker (app/pipeline/chunk.py): hand-made cases, properties, real documents.

Needs ``TIKTOKEN_CACHE_DIR`` to hold the cl100k_base file on machines without internet
(tests/conftest.py points it at ../shared/data/tiktoken when unset).
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from functools import cache
from itertools import accumulate, pairwise
from pathlib import Path
from typing import Any

import pytest
import tiktoken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.config import ChunkingSettings
from app.pipeline.chunk import Chunk, Chunker

ENCODING = "cl100k_base"


@cache
def _enc() -> tiktoken.Encoding:
    return tiktoken.get_encoding(ENCODING)


def normalize(text: str) -> str:
    """A small stand-in for the extractor's normalisation, enough for the corpus's plain text."""
    text = re.sub(r"\r\n?|[\f\v]", "\n", text)
    text = re.sub(r"[^\S\n]+", " ", text)
    text = re.sub(r" ?\n ?", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


class TokenSpans:
    """Token spans of character ranges, from the whole text's encoding, computed independently of
    the chunker (byte offsets of characters against byte offsets of tokens)."""

    def __init__(self, text: str) -> None:
        enc = _enc()
        # A lone surrogate is 3 bytes with surrogatepass, as its U+FFFD stand-in is in tiktoken.
        self.char_byte = list(
            accumulate((len(c.encode("utf-8", "surrogatepass")) for c in text), initial=0)
        )
        lengths = [len(enc.decode_single_token_bytes(t)) for t in enc.encode_ordinary(text)]
        self.token_start = list(accumulate(lengths, initial=0))[:-1]
        self.token_end = list(accumulate(lengths))

    def span(self, start: int, end: int) -> int:
        """Number of tokens that hold at least one byte of ``text[start:end]``."""
        if start >= end:
            return 0
        lo, hi = self.char_byte[start], self.char_byte[end]
        # Tokens from the first that ends after byte lo to the last that starts before byte hi.
        return bisect_left(self.token_start, hi) - bisect_right(self.token_end, lo)


def check_invariants(chunker: Chunker, text: str, chunks: list[Chunk]) -> None:
    """Assert every documented property of ``chunker.split(text)``."""
    size, overlap, min_size = chunker.chunk_size, chunker.chunk_overlap, chunker.min_chunk_size
    tokens = TokenSpans(text) if chunker.unit == "tokens" else None
    # In model_tokens mode the unit checks (2, 3's sizes, 5) are the caller's, with the model's
    # tokenizer; the rest holds for every unit.
    chars = chunker.unit == "chars"

    if not text.strip():
        assert chunks == []
        return
    assert chunks

    # 4. offsets map back, no surrounding whitespace, indexes 0..n-1.
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert 0 <= c.start_char < c.end_char <= len(text)
        assert c.text == text[c.start_char : c.end_char]
        assert c.text == c.text.strip()

    # 1. every non-whitespace character is inside some chunk.
    depth = [0] * (len(text) + 1)
    for c in chunks:
        depth[c.start_char] += 1
        depth[c.end_char] -= 1
    for i, d in enumerate(accumulate(depth[:-1])):
        assert d > 0 or text[i].isspace(), f"character {i} ({text[i]!r}) is in no chunk"

    # 2. no chunk exceeds chunk_size units (in tokens: unless it is one character, which is never
    #    split even when it alone spans more tokens than a tiny chunk_size).
    for c in chunks:
        if chars:
            assert len(c.text) <= size
        elif tokens is not None:
            assert tokens.span(c.start_char, c.end_char) <= size or len(c.text) == 1

    # 3. consecutive chunks overlap by 0..chunk_overlap units and at most half the earlier one, or
    #    (no overlap) only whitespace lies between them; starts and ends strictly increase.
    for prev, nxt in pairwise(chunks):
        assert prev.start_char < nxt.start_char
        assert prev.end_char < nxt.end_char
        assert nxt.start_char <= prev.end_char or not text[prev.end_char : nxt.start_char].strip()
        if chars:
            shared = prev.end_char - nxt.start_char
            whole = len(prev.text)
        elif tokens is not None:
            shared = tokens.span(nxt.start_char, prev.end_char)
            whole = tokens.span(prev.start_char, prev.end_char)
        else:
            continue
        assert shared <= overlap
        assert shared <= whole // 2

    # 5. every chunk but the last has at least min_chunk_size characters, unless a whitespace run
    #    longer than chunk_size - min_chunk_size made that impossible without losing text.
    if chars and not re.search(rf"\s{{{size - min_size + 1},}}", text):
        for c in chunks[:-1]:
            assert len(c.text) >= min_size

    # 6. token counts are the chunk's own encoding, special-token strings included as text.
    for c in chunks:
        assert c.token_count == len(_enc().encode(c.text, disallowed_special=()))


def spans(chunks: list[Chunk]) -> list[tuple[int, int]]:
    return [(c.start_char, c.end_char) for c in chunks]


# --------------------------------------------------------------------------------------------------
# Construction
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"chunk_size": 0, "chunk_overlap": 0, "min_chunk_size": 1},
        {"chunk_size": 100, "chunk_overlap": 100},
        {"chunk_size": 100, "chunk_overlap": -1},
        {"chunk_size": 100, "chunk_overlap": 10, "min_chunk_size": 0},
        {"chunk_size": 100, "chunk_overlap": 10, "min_chunk_size": 101},
        {"unit": "words"},
        {"encoding": "no_such_encoding"},
    ],
)
def test_invalid_settings_raise_value_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Chunker(**kwargs)  # type: ignore[arg-type]


def test_defaults_are_design_section_6() -> None:
    c = Chunker()
    assert (c.chunk_size, c.chunk_overlap, c.min_chunk_size, c.unit, c.encoding) == (
        1000,
        200,
        100,
        "chars",
        "cl100k_base",
    )


def test_from_settings() -> None:
    s = ChunkingSettings(
        chunk_size=300, chunk_overlap=30, min_chunk_size=20, unit="tokens", encoding="o200k_base"
    )
    c = Chunker.from_settings(s)
    assert (c.chunk_size, c.chunk_overlap, c.min_chunk_size, c.unit, c.encoding) == (
        300,
        30,
        20,
        "tokens",
        "o200k_base",
    )
    assert c.count_tokens("hello world") == 2


# --------------------------------------------------------------------------------------------------
# Hand-made cases
# --------------------------------------------------------------------------------------------------

SENTENCES = [f"This is sentence number {i:02d}." for i in range(10)]  # 27 characters each


@pytest.mark.parametrize(
    ("text", "kwargs", "expected"),
    [
        pytest.param("", {}, [], id="empty"),
        pytest.param(" \n\n \t ", {}, [], id="whitespace-only"),
        pytest.param("Hello.", {}, [(0, 6)], id="shorter-than-min-is-one-chunk"),
        pytest.param("  \n Hello world. \n", {}, [(4, 16)], id="surrounding-whitespace-trimmed"),
        pytest.param(
            # 3 sentences + 2 spaces = 83 <= 100 < 111: exactly three sentences per chunk.
            " ".join(SENTENCES),
            {"chunk_size": 100, "chunk_overlap": 0, "min_chunk_size": 10},
            [(0, 83), (84, 167), (168, 251), (252, 279)],
            id="sentence-breaks",
        ),
        pytest.param(
            "x" * 2500,
            {"chunk_size": 1000, "chunk_overlap": 200, "min_chunk_size": 100},
            [(0, 1000), (800, 1800), (1600, 2500)],
            id="no-whitespace-hard-cuts",
        ),
        pytest.param(
            "x" * 2500,
            {"chunk_size": 1000, "chunk_overlap": 0, "min_chunk_size": 100},
            [(0, 1000), (1000, 2000), (2000, 2500)],
            id="no-whitespace-no-overlap",
        ),
        pytest.param(
            "漢字仮名交じり文" * 30,  # 240 characters, no spaces, no full stops
            {"chunk_size": 100, "chunk_overlap": 20, "min_chunk_size": 10},
            [(0, 100), (80, 180), (160, 240)],
            id="cjk-hard-cuts",
        ),
        pytest.param(
            "これは日本語の文です。" * 12,  # 11 characters per sentence, no spaces
            {"chunk_size": 50, "chunk_overlap": 0, "min_chunk_size": 10},
            [(0, 44), (44, 88), (88, 132)],
            id="cjk-full-stops",
        ),
        pytest.param(
            "alpha beta gamma\n\ndelta epsilon zeta eta theta iota",
            {"chunk_size": 30, "chunk_overlap": 0, "min_chunk_size": 5},
            [(0, 16), (18, 46), (47, 51)],
            id="paragraph-break-beats-later-word-ends",
        ),
        pytest.param(
            "Aaa bbb. Ccc ddd eee fff ggg",
            {"chunk_size": 20, "chunk_overlap": 0, "min_chunk_size": 5},
            [(0, 8), (9, 28)],
            id="sentence-end-beats-later-word-ends",
        ),
        pytest.param(
            'He said "stop." Then it went on and on',
            {"chunk_size": 25, "chunk_overlap": 0, "min_chunk_size": 5},
            [(0, 15), (16, 38)],
            id="closing-quote-stays-with-its-sentence",
        ),
        pytest.param(
            "Dr. Aaaaaaaaaaaaaaaaa bbbbbbbbb",
            {"chunk_size": 25, "chunk_overlap": 0, "min_chunk_size": 5},
            [(0, 21), (22, 31)],
            id="sentence-end-shorter-than-min-is-skipped",
        ),
        pytest.param(
            "one two three four five six seven",
            {"chunk_size": 15, "chunk_overlap": 6, "min_chunk_size": 3},
            [(0, 13), (8, 23), (19, 33)],
            id="overlap-starts-at-a-word",
        ),
        pytest.param(
            "3.14 and 2.71 are numbers",
            {"chunk_size": 10, "chunk_overlap": 0, "min_chunk_size": 2},
            [(0, 8), (9, 17), (18, 25)],
            id="decimal-point-is-not-a-sentence-end",
        ),
    ],
)
def test_cases(text: str, kwargs: dict[str, int], expected: list[tuple[int, int]]) -> None:
    chunker = Chunker(**kwargs)  # type: ignore[arg-type]
    chunks = chunker.split(text)
    assert spans(chunks) == expected
    check_invariants(chunker, text, chunks)


def test_sentence_chunks_hold_whole_sentences() -> None:
    chunks = Chunker(chunk_size=100, chunk_overlap=0, min_chunk_size=10).split(" ".join(SENTENCES))
    assert [c.text for c in chunks] == [" ".join(SENTENCES[i : i + 3]) for i in range(0, 10, 3)]


def test_overlap_repeats_the_end_of_the_previous_chunk() -> None:
    text = " ".join(f"Word{i} and some more words number {i}." for i in range(200))
    chunker = Chunker(chunk_size=300, chunk_overlap=60, min_chunk_size=30)
    chunks = chunker.split(text)
    assert len(chunks) > 10
    for prev, nxt in pairwise(chunks):
        shared = prev.end_char - nxt.start_char
        # Word alignment may shorten the overlap by less than a word, never drop it.
        assert 60 - 20 < shared <= 60
        assert nxt.text.startswith(prev.text[-shared:])
        assert text[nxt.start_char - 1] == " "  # starts at a word
    check_invariants(chunker, text, chunks)


def test_short_chunk_overlap_is_capped_at_half() -> None:
    # The only sentence end comes early, so the first chunk is short; a full 40-character overlap
    # would repeat it almost whole.
    text = "Short one. " + " ".join(["lorem"] * 30)
    chunker = Chunker(chunk_size=60, chunk_overlap=40, min_chunk_size=5)
    chunks = chunker.split(text)
    assert chunks[0].text == "Short one."
    assert chunks[1].start_char >= 5
    check_invariants(chunker, text, chunks)


def test_special_token_text_is_ordinary_text() -> None:
    text = "Before <|endoftext|> after. " * 50
    chunker = Chunker(chunk_size=100, chunk_overlap=10, min_chunk_size=10)
    chunks = chunker.split(text)
    assert chunks
    assert chunker.count_tokens("<|endoftext|>") > 1
    check_invariants(chunker, text, chunks)


def test_whitespace_run_longer_than_a_window_loses_nothing() -> None:
    text = "abc" + " " * 50 + "def ghi"
    chunker = Chunker(chunk_size=20, chunk_overlap=5, min_chunk_size=10)
    chunks = chunker.split(text)
    assert [c.text for c in chunks] == ["abc", "def ghi"]
    check_invariants(chunker, text, chunks)


def test_tokens_mode_windows_are_token_sized() -> None:
    text = " ".join(SENTENCES * 5)
    chunker = Chunker(chunk_size=40, chunk_overlap=8, min_chunk_size=5, unit="tokens")
    chunks = chunker.split(text)
    assert len(chunks) > 5
    assert all(c.text.endswith(".") for c in chunks)
    # Each sentence is 6-7 tokens; a 40-token window holds five or six of them.
    assert all(30 <= c.token_count <= 40 for c in chunks[:-1])
    check_invariants(chunker, text, chunks)


def test_tokens_mode_multibyte_characters_split_across_tokens() -> None:
    # Emoji and rare CJK characters are several tokens each in cl100k_base.
    text = "🎉😀🙈 " * 20 + "鑫龘" * 20
    for size in (1, 2, 3, 4, 7):
        chunker = Chunker(chunk_size=size, chunk_overlap=size // 2, min_chunk_size=1, unit="tokens")
        check_invariants(chunker, text, chunker.split(text))


# --------------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------------

_PIECES = st.one_of(
    st.from_regex(r"[a-zA-Z]{1,9}", fullmatch=True),
    st.sampled_from(
        [" ", " ", " ", "\n", "\n\n", ". ", "! ", "? ", '." ', ".) ", "\t", "  ", "\u3000"]
    ),
    st.sampled_from(["é", "日本語", "。", "🎉", "👩‍👩‍👧", "鑫", "<|endoftext|>", "x.y"]),
    st.characters(),
)
TEXTS = st.one_of(
    st.lists(_PIECES, max_size=120).map("".join),
    st.text(alphabet=st.sampled_from("ab .\n!?\"'é日🎉"), max_size=300),
    st.text(max_size=200),
)


@st.composite
def sizes(draw: st.DrawFn, max_size: int) -> tuple[int, int, int]:
    size = draw(st.integers(1, max_size))
    overlap = draw(st.integers(0, size - 1))
    min_size = draw(st.integers(1, size))
    return size, overlap, min_size


_SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings(_SETTINGS, max_examples=400)
@given(text=TEXTS, params=sizes(max_size=80))
def test_properties_chars(text: str, params: tuple[int, int, int]) -> None:
    size, overlap, min_size = params
    chunker = Chunker(chunk_size=size, chunk_overlap=overlap, min_chunk_size=min_size)
    check_invariants(chunker, text, chunker.split(text))


@settings(_SETTINGS, max_examples=150)
@given(text=TEXTS, params=sizes(max_size=30))
def test_properties_tokens(text: str, params: tuple[int, int, int]) -> None:
    size, overlap, min_size = params
    chunker = Chunker(
        chunk_size=size, chunk_overlap=overlap, min_chunk_size=min_size, unit="tokens"
    )
    check_invariants(chunker, text, chunker.split(text))


# --------------------------------------------------------------------------------------------------
# Real documents
# --------------------------------------------------------------------------------------------------


def _read(corpus: Path, name: str) -> str:
    return normalize((corpus / "text" / "txt" / name).read_text(encoding="utf-8"))


def test_rfc_chunks_end_at_breaks_and_are_full(corpus: Path) -> None:
    text = _read(corpus, "rfc3986.txt")
    chunker = Chunker()
    chunks = chunker.split(text)
    check_invariants(chunker, text, chunks)
    at_break = sum(1 for c in chunks if c.end_char == len(text) or text[c.end_char].isspace())
    assert at_break / len(chunks) > 0.8
    full = chunks[:-1]
    assert sum(len(c.text) for c in full) / len(full) > 0.7 * chunker.chunk_size
    # Prose with periods: most chunks end a sentence.
    assert sum(1 for c in full if c.text[-1] in ".!?\"')") / len(full) > 0.5


def test_multilingual_text_in_tokens_mode(corpus: Path) -> None:
    text = _read(corpus, "i18n/UDHR_first_article_all.txt")
    chunker = Chunker(chunk_size=128, chunk_overlap=16, min_chunk_size=16, unit="tokens")
    chunks = chunker.split(text)
    assert len(chunks) > 10
    check_invariants(chunker, text, chunks)


def test_long_book_chars_mode(corpus: Path) -> None:
    text = _read(corpus, "book-war-and-peace-1225p.txt")
    chunker = Chunker()
    chunks = chunker.split(text)
    assert len(chunks) > 3000
    # The union of the chunks is contiguous from the first to the last non-space character.
    assert text[: chunks[0].start_char].strip() == ""
    assert text[chunks[-1].end_char :].strip() == ""
    for prev, nxt in pairwise(chunks):
        assert prev.start_char < nxt.start_char <= prev.end_char < nxt.end_char
        assert prev.end_char - nxt.start_char <= 200
    for c in chunks:
        assert 100 <= len(c.text) <= 1000 or c is chunks[-1]
        assert c.text == text[c.start_char : c.end_char]
    assert sum(len(c.text) for c in chunks) / len(chunks) > 800


# --------------------------------------------------------------------------------------------------
# The model's own tokens
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rel", ["text/txt/rfc3986.txt", "text/txt/i18n/UDHR_first_article_all.txt"]
)
def test_model_tokens_mode_fits_the_model_window(
    corpus: Path, rel: str, model_tokens: tuple[Path, Any]
) -> None:
    path, tok = model_tokens
    text = normalize((corpus / rel).read_text(encoding="utf-8"))
    chunker = Chunker(
        chunk_size=254,
        chunk_overlap=50,
        min_chunk_size=25,
        unit="model_tokens",
        tokenizer_file=path,
    )
    chunks = chunker.split(text)
    assert len(chunks) > 5
    check_invariants(chunker, text, chunks)
    # Encoded on its own with [CLS] and [SEP], every chunk fits all-MiniLM-L6-v2's 256.
    lengths = [len(tok.encode(c.text).ids) for c in chunks]  # type: ignore[attr-defined]
    assert max(lengths) <= 256
    # ... and the windows are used: most chunks are well past half of it.
    assert sorted(lengths)[len(lengths) // 2] > 160
    # Consecutive chunks share at most chunk_overlap model tokens (one more where a word piece
    # straddles the cut: the shared text is encoded on its own here).
    for prev, nxt in pairwise(chunks):
        shared = text[nxt.start_char : prev.end_char]
        assert len(tok.encode(shared, add_special_tokens=False).ids) <= 50 + 1  # type: ignore[attr-defined]


def test_model_tokens_mode_is_refused_where_it_cannot_work() -> None:
    from app.config import EmbeddingSettings, Settings
    from app.runtime import model_tokenizer_file

    big = ChunkingSettings(unit="model_tokens", chunk_size=300, chunk_overlap=50)
    with pytest.raises(ValueError, match="at most 254"):
        model_tokenizer_file(Settings(_env_file=None, chunking=big))  # type: ignore[call-arg]
    fits = ChunkingSettings(unit="model_tokens", chunk_size=200, chunk_overlap=50)
    hosted = EmbeddingSettings(provider="openai", model="text-embedding-3-small")
    with pytest.raises(ValueError, match="unit=tokens"):
        model_tokenizer_file(Settings(_env_file=None, chunking=fits, embedding=hosted))  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="tokenizer_file"):
        Chunker(chunk_size=200, chunk_overlap=10, unit="model_tokens")
