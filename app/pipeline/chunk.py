"""Split normalised text into overlapping chunks that prefer to end at sentence ends (DESIGN §6).

The chunker is greedy. From the current start it opens a window of ``chunk_size`` units
(characters, or tiktoken tokens of the whole text) and ends the chunk at the last good break inside
the window:

1. a paragraph break (``"\\n\\n"``) or a sentence end, that is ``.``, ``!`` or ``?``,
   optionally followed by closing quotes or brackets, then whitespace (the CJK full stop,
   exclamation and question marks need no whitespace: CJK text has none); the chunk ends right
   after the punctuation;
2. else the end of the last word before whitespace;
3. else a hard cut at the window's end.

The next chunk starts ``chunk_overlap`` units before the previous end, moved forward to the start of
a word when one begins before that end. Chunks never start or end with whitespace, and every
chunk's ``text`` is exactly ``source[start_char:end_char]``, so offsets can be stored and the text
re-cut later.

Invariants (property-tested in ``tests/pipeline/test_chunk.py``):

- every non-whitespace character of the text is inside some chunk;
- a chunk spans at most ``chunk_size`` units (in token mode: tokens of the whole text's encoding
  that the chunk touches; a single character is never split, so a chunk of one character may
  exceed a ``chunk_size`` under 4 tokens);
- consecutive chunks overlap by at most ``chunk_overlap`` units and at most half the earlier chunk
  (so a short chunk is not repeated almost whole); where they do not overlap, only whitespace lies
  between them. Starts strictly increase and every chunk ends after the previous one, so no chunk
  is contained in another;
- every chunk but the last is at least ``min_chunk_size`` units long, unless the text has a
  whitespace run longer than ``chunk_size - min_chunk_size``, which normalised text (runs of at
  most two) never has. Such a short piece is kept rather than dropped, because dropping it would
  lose text.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from functools import cache
from itertools import accumulate
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import tiktoken
from typing_extensions import override

from app.tokens import get_encoding

if TYPE_CHECKING:
    from app.config import ChunkingSettings

__all__ = ["Chunk", "Chunker"]

_CLOSERS = "\"'\u201d\u2019)\\]}\u00bb"
_CJK_CLOSERS = "\u300d\u300f\uff09\u3011\u300b\u3009\u201d\u2019"
#: A match ends where a chunk may end with the first preference: after a sentence end, or before
#: a paragraph break.
_SENTENCE_END = re.compile(
    rf"[.!?][{_CLOSERS}]*(?=\s)"
    rf"|[\u3002\uff01\uff1f][{_CJK_CLOSERS}]*"
    r"|\S(?=\n\n)"
)
#: A match ends at the end of a word followed by whitespace: the second preference.
_WORD_END = re.compile(r"\S(?=\s)")
_WORD_START = re.compile(r"(?<!\S)\S")
_NON_SPACE = re.compile(r"\S")

#: UTF-8 continuation bytes (0b10xxxxxx): they never start a character.
_CONTINUATION = bytes(range(0x80, 0xC0))


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk of a document's normalised text.

    Attributes:
        index: 0-based position of the chunk in the document.
        text: the chunk's text, equal to ``source_text[start_char:end_char]``; never empty, no
            leading or trailing whitespace.
        start_char: offset of the first character in the source text (characters, not bytes).
        end_char: offset just past the last character (exclusive).
        token_count: number of tokens of ``text`` encoded on its own with the chunker's tiktoken
            encoding (special-token strings count as ordinary text).
    """

    index: int
    text: str
    start_char: int
    end_char: int
    token_count: int


class _TokenMap:
    """Character offsets of the tokens of one text, for sizing windows in tokens.

    ``ceil[k]`` is the first character that starts at or after token ``k``'s first byte, with a
    sentinel ``len(text)`` at index ``len(tokens)``. It differs from the character that holds that
    byte (:meth:`floor`) only where a token starts inside a multi-byte character.
    """

    __slots__ = ("ceil", "mid", "n_tokens", "text_len", "tokens")

    def __init__(self, tokens: list[int], mid: list[int], text_len: int, ceil: list[int]) -> None:
        self.tokens = tokens
        self.mid = mid
        self.ceil = ceil
        self.n_tokens = len(tokens)
        self.text_len = text_len

    def token_at(self, char: int) -> int:
        """Index of the token that holds the first byte of character ``char``."""
        # ceil[k] <= char exactly when token k starts at or before char's first byte.
        return bisect_right(self.ceil, char) - 1

    def last_token_before(self, char: int) -> int:
        """Index of the token that holds the last byte of character ``char - 1`` (``char > 0``)."""
        k = bisect_left(self.ceil, char) - 1
        # Tokens that start inside character char - 1 (at most 3: UTF-8 has at most 4 bytes).
        while k + 1 < self.n_tokens and self.floor(k + 1) < char:
            k += 1
        return k

    def floor(self, k: int) -> int:
        """The character holding token ``k``'s first byte (``k < n_tokens``)."""
        return self.ceil[k] - self.mid[self.tokens[k]]


@cache
def _token_tables(encoding: str) -> tuple[list[int], list[int]]:
    """Per token id of ``encoding``: characters starting in it, and 1 if it starts mid-character.

    Built once per encoding (about 0.1 s for cl100k_base) so that mapping a text's tokens to
    character offsets needs no Python-level work per token.
    """
    enc = get_encoding(encoding)
    size = enc.max_token_value + 1
    starts = [0] * size
    mid = [0] * size
    for token in range(size):
        try:
            raw = enc.decode_single_token_bytes(token)
        except KeyError:  # unused ids between the ordinary and the special tokens
            continue
        # Characters that start in a token are its bytes that are not UTF-8 continuation bytes.
        starts[token] = len(raw.translate(None, _CONTINUATION))
        mid[token] = int(0x80 <= raw[0] < 0xC0)
    return starts, mid


class Chunker:
    """Splits normalised text into :class:`Chunk` objects (DESIGN §6).

    Sizes are in characters (``unit="chars"``) or in tiktoken tokens of ``encoding``
    (``unit="tokens"``). The defaults, 1000 / 200 / 100 characters, are DESIGN §6's and
    :class:`app.config.ChunkingSettings`'.

    A chunker holds no per-document state; one instance may be shared by threads.
    """

    def __init__(
        self,
        chunk_size: int = 1000,
        chunk_overlap: int = 200,
        min_chunk_size: int = 100,
        unit: Literal["chars", "tokens", "model_tokens"] = "chars",
        encoding: str = "cl100k_base",
        tokenizer_file: Path | None = None,
    ) -> None:
        """Configure a chunker.

        Args:
            chunk_size: largest chunk, in units of ``unit``.
            chunk_overlap: how much of the end of a chunk the next one repeats, in units of
                ``unit``; also capped at half the earlier chunk.
            min_chunk_size: smallest chunk but the last, in units of ``unit``: a chunk never ends
                at a sentence or word break that would leave it shorter.
            unit: ``"chars"`` (Unicode code points), ``"tokens"`` (tiktoken tokens of
                ``encoding``) or ``"model_tokens"`` (the embedding model's own tokens, from
                ``tokenizer_file``; special tokens such as ``[CLS]``/``[SEP]`` not counted).
            encoding: tiktoken encoding name, for token counts and token sizing. Loaded on first
                use (``TIKTOKEN_CACHE_DIR`` must hold it on machines without internet).
            tokenizer_file: a Hugging Face ``tokenizer.json`` (the model's); required for
                ``"model_tokens"``, read at once.

        Raises:
            ValueError: unless ``0 <= chunk_overlap < chunk_size`` and
                ``1 <= min_chunk_size <= chunk_size``, or when ``unit`` or ``encoding`` is unknown.
        """
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        if not 0 <= chunk_overlap < chunk_size:
            raise ValueError(
                f"chunk_overlap must be in [0, chunk_size={chunk_size}), got {chunk_overlap}"
            )
        if not 1 <= min_chunk_size <= chunk_size:
            raise ValueError(
                f"min_chunk_size must be in [1, chunk_size={chunk_size}], got {min_chunk_size}"
            )
        if unit not in ("chars", "tokens", "model_tokens"):
            raise ValueError(f"unit must be 'chars', 'tokens' or 'model_tokens', got {unit!r}")
        self._model_tokenizer: Any = None
        if unit == "model_tokens":
            if tokenizer_file is None:
                raise ValueError("unit 'model_tokens' needs the model's tokenizer_file")
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(tokenizer_file))
            # tokenizer.json may carry the model's own truncation and padding: measure whole texts.
            tok.no_truncation()
            tok.no_padding()
            self._model_tokenizer = tok
        # Checked against the registry now so that a typo fails at start-up, not at the first
        # document; loading the BPE file itself waits for first use.
        if encoding not in tiktoken.list_encoding_names():
            raise ValueError(
                f"unknown tiktoken encoding {encoding!r}; known: {tiktoken.list_encoding_names()}"
            )
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self.min_chunk_size = min_chunk_size
        self.unit: Literal["chars", "tokens", "model_tokens"] = unit
        self.tokenizer_file = tokenizer_file
        self.encoding = encoding
        self._enc: tiktoken.Encoding | None = None

    @classmethod
    def from_settings(cls, s: ChunkingSettings, *, tokenizer_file: Path | None = None) -> Chunker:
        """Build a chunker from the ``chunking`` settings group (``tokenizer_file``: the
        embedding model's, for ``unit="model_tokens"``)."""
        return cls(
            chunk_size=s.chunk_size,
            chunk_overlap=s.chunk_overlap,
            min_chunk_size=s.min_chunk_size,
            unit=s.unit,
            encoding=s.encoding,
            tokenizer_file=tokenizer_file,
        )

    @override
    def __repr__(self) -> str:
        return (
            f"Chunker(chunk_size={self.chunk_size}, chunk_overlap={self.chunk_overlap}, "
            f"min_chunk_size={self.min_chunk_size}, unit={self.unit!r}, "
            f"encoding={self.encoding!r})"
        )

    @property
    def tokenizer(self) -> tiktoken.Encoding:
        """The tiktoken encoding, loaded on first use (``cl100k_base`` from the package, so with
        no network; see :mod:`app.tokens`).

        Raises:
            ValueError: the encoding could not be loaded (the message names the remedy).
        """
        if self._enc is None:
            self._enc = get_encoding(self.encoding)
        return self._enc

    def count_tokens(self, text: str) -> int:
        """Number of tokens of ``text`` in the configured encoding.

        Special-token strings such as ``<|endoftext|>`` count as ordinary text instead of raising.
        """
        return len(self.tokenizer.encode_ordinary(text))

    def split(self, text: str) -> list[Chunk]:
        """Split ``text`` into chunks.

        Args:
            text: normalised text (see :func:`app.pipeline.extract.normalize_text`); it is not
                normalised again, so offsets refer to exactly this string.

        Returns:
            The chunks in document order, indexed from 0; ``[]`` when ``text`` is empty or only
            whitespace.
        """
        first = _NON_SPACE.search(text)
        if first is None:
            return []
        tokens = None
        if self.unit == "tokens":
            tokens = self._token_map(text)
        elif self.unit == "model_tokens":
            tokens = self._model_token_map(text)
        spans = self._spans(text, first.start(), tokens)
        pieces = [text[s:e] for s, e in spans]
        enc = self.tokenizer
        return [
            Chunk(index=i, text=piece, start_char=s, end_char=e, token_count=len(ids))
            for i, ((s, e), piece, ids) in enumerate(
                zip(spans, pieces, map(enc.encode_ordinary, pieces), strict=True)
            )
        ]

    # ----------------------------------------------------------------------------------------------
    # Internals
    # ----------------------------------------------------------------------------------------------

    def _spans(self, text: str, start: int, tokens: _TokenMap | None) -> list[tuple[int, int]]:
        """(start_char, end_char) of every chunk; ``start`` is the first non-space character."""
        n = len(text)
        spans: list[tuple[int, int]] = []
        s = start
        prev_end = 0
        next_new = start  # first non-space character not yet in any chunk
        while True:
            hi = self._window_end(s, tokens)
            if hi <= next_new < n:
                # Only whitespace between the overlap start and the window's end: the window
                # would hold nothing new, so overlap is impossible here.
                s = next_new
                continue
            if hi >= n:
                spans.append((s, s + len(text[s:].rstrip())))
                return spans
            # Breaks at or before the previous end would give a chunk inside the previous one.
            lo = max(self._min_end(s, tokens), prev_end + 1)
            e = _last_end(_SENTENCE_END, text, lo, hi)
            if e is None:
                e = _last_end(_WORD_END, text, lo, hi)
            if e is None:
                e = s + len(text[s:hi].rstrip())
            spans.append((s, e))
            found = _NON_SPACE.search(text, e)
            if found is None:
                return spans
            next_new = found.start()
            prev_end = e
            p = self._overlap_start(s, e, tokens)
            # Prefer starting at a word; the first non-space at or after p otherwise (never past
            # next_new, so no text is skipped).
            word = _WORD_START.search(text, p, e)
            found = word or _NON_SPACE.search(text, p)
            s = found.start() if found is not None else next_new

    def _window_end(self, s: int, tokens: _TokenMap | None) -> int:
        """Exclusive end (characters) of the ``chunk_size`` window starting at character ``s``."""
        if tokens is None:
            return s + self.chunk_size
        past = tokens.token_at(s) + self.chunk_size  # first token outside the window
        if past >= tokens.n_tokens:
            return tokens.text_len
        # floor: a character that token `past` starts inside is left out of the window. Always
        # take at least one character, even if it alone spans more than chunk_size tokens.
        return max(tokens.floor(past), s + 1)

    def _min_end(self, s: int, tokens: _TokenMap | None) -> int:
        """Smallest end (characters) that gives a chunk from ``s`` of ``min_chunk_size`` units."""
        if tokens is None:
            return s + self.min_chunk_size
        last = tokens.token_at(s) + self.min_chunk_size - 1
        if last >= tokens.n_tokens:
            return tokens.text_len
        return max(tokens.ceil[last] + 1, s + 1)

    def _overlap_start(self, s: int, e: int, tokens: _TokenMap | None) -> int:
        """Where the next chunk may start after chunk ``[s, e)``: in ``(s, e]``."""
        if tokens is None:
            return e - min(self.chunk_overlap, (e - s) // 2)
        first = tokens.token_at(s)
        last = tokens.last_token_before(e)
        keep = min(self.chunk_overlap, (last - first + 1) // 2)
        if keep == 0:
            return e
        # Token last-keep+1 > first starts after s's first byte, so this is > s.
        return min(tokens.ceil[last - keep + 1], e)

    def _model_token_map(self, text: str) -> _TokenMap:
        """Encode the whole text once with the model's tokenizer; its offsets are characters.

        Characters the tokenizer drops (spaces, control characters) belong to the token before
        them, and the first token is taken to start at 0, so every character maps to a token.
        """
        offsets = self._model_tokenizer.encode(text, add_special_tokens=False).offsets
        starts = [start for start, _ in offsets]
        if starts:
            starts[0] = 0
        ceil = [*starts, len(text)]
        n = len(starts)
        return _TokenMap(list(range(n)), [0] * n, len(text), ceil)

    def _token_map(self, text: str) -> _TokenMap:
        """Encode the whole text once and map each token to character offsets."""
        tokens = self.tokenizer.encode_ordinary(text)
        starts, mid = _token_tables(self.encoding)
        ceil = list(accumulate(map(starts.__getitem__, tokens), initial=0))
        if ceil[-1] != len(text):  # pragma: no cover - tiktoken maps one character to one
            raise AssertionError(f"token offsets cover {ceil[-1]} characters of {len(text)}")
        return _TokenMap(tokens, mid, len(text), ceil)


def _last_end(pattern: re.Pattern[str], text: str, lo: int, hi: int) -> int | None:
    """The last match end of ``pattern`` in ``[lo, hi]``, or ``None``.

    Searches backwards from ``hi`` in growing steps, so the usual case (a break near the window's
    end) reads a few dozen characters instead of the whole window.
    """
    step = 64
    top = hi
    while top >= lo:
        # Start a little before the range so that a sentence end's punctuation is seen even when
        # only its closing quotes are inside; run 2 past ``top`` for the lookaheads (whitespace,
        # paragraph break) and drop later ends.
        bottom = max(top - step, lo)
        best = None
        for m in pattern.finditer(text, max(bottom - 8, 0), top + 2):
            end = m.end()
            if end > top:
                break
            if end >= bottom:
                best = end
        if best is not None:
            return best
        top = bottom - 1
        step *= 4
    return None
