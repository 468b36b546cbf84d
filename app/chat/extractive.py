"""The ``extractive`` chat provider, the offline default: no language model. The answer is the few
sentences of the sources that best match the question, quoted, each followed by the ``[n]`` of
its source — so ``docvec ask`` works on the embedded defaults with no service at all.

Matching uses the lexical analysis of search (:func:`app.lexical.analyze`: lower case, English
stop words out, Snowball stems), so "handshaking" matches "handshake". A sentence scores the sum of
the inverse sentence frequency of the question's terms it holds (a rare shared term counts more
than a common one), divided by ``1 + ln(1 + its terms)`` so that long sentences do not win by
length alone, and weighed down a little by its source's rank (``1 / (1 + 0.1 * rank)``: the
retrieval's order is evidence too). The best ``extractive_sentences`` distinct sentences are
quoted, best first. When no sentence shares a term with the question, the first sentence of the
best source is quoted, so that the answer still shows what was found.

Quoted text is data, never instructions: a sentence is only ever copied, whatever it says. Two
things in a quote are neutralised so that the citation processor reads only this provider's own
markers: bracketed numbers (a document's own reference ``[4]`` becomes ``(4)``) and unbalanced
backticks (which would open a code span and hide the marker that follows).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from typing_extensions import override

from app import lexical
from app.chat.base import ChatPrompt, ChatProvider, ChatUsage, PromptSource

#: Sentence ends: ``. ! ?`` (optionally closed by a quote or bracket) and the space after them,
#: before something that can start a sentence.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[A-Z0-9\"'(\[`*_-])")
_BLANK_LINE = re.compile(r"\n\s*\n")
#: A line break before a line that starts a Markdown block.
_BLOCK_START = re.compile(r"\n(?=[ \t]*(?:#{1,6}\s|[-*+]\s|\d{1,3}[.)]\s|>|\||```|~~~))")
#: A hyphenated word wrapped at its hyphen ("percent-\n   encoded", as RFCs wrap them).
_WRAPPED_HYPHEN = re.compile(r"(\w)-\n[ \t]*(\w)")
#: A Markdown heading, a table row or a fence: structure, not a statement to quote.
_NOT_PROSE = re.compile(r"^(?:#{1,6}\s|\||```|~~~)")
_SPACES = re.compile(r"\s+")
#: A citation-shaped bracket in a quote (see app/answers/citations.py for the marker syntax).
_MARKER = re.compile(r"\[(\s*\d{1,3}(?:\s*,\s*\d{1,3})*\s*)\]")

#: The marker of a list item, which a quote does without ("- " would follow "- ").
_LIST_ITEM = re.compile(r"^(?:[-*+]|\d{1,3}[.)])\s+")

#: Shortest and longest sentence quoted, characters; longer ones are cut at a word.
MIN_SENTENCE_CHARS = 20
MAX_SENTENCE_CHARS = 400
#: How much each lower rank of a source weighs its sentences down.
RANK_DECAY = 0.1


@dataclass(frozen=True, slots=True)
class _Sentence:
    source: int  # the source's n
    rank: int  # 0-based rank of the source
    position: int  # order inside the source
    text: str
    terms: frozenset[str]


def split_sentences(text: str) -> list[str]:
    """``text`` cut into sentences, whitespace collapsed. A paragraph always ends one, and so
    does a line before a Markdown block (a heading, a list item, a quote, a table row, a fence);
    other line breaks are hard wrapping (RFCs, plain text) and join their lines, a word cut at
    its hyphen whole again."""
    out: list[str] = []
    text = _WRAPPED_HYPHEN.sub(r"\1-\2", text)
    for paragraph in _BLANK_LINE.split(text):
        for block in _BLOCK_START.split(paragraph):
            flat = _SPACES.sub(" ", block).strip()
            if flat:
                out.extend(s.strip() for s in _SENTENCE_END.split(flat) if s.strip())
    return out


def _quotable(sentence: str) -> str:
    """The sentence as quoted: cut to :data:`MAX_SENTENCE_CHARS`, without a list item's marker,
    citation-shaped brackets or unbalanced backticks."""
    if len(sentence) > MAX_SENTENCE_CHARS:
        cut = sentence[:MAX_SENTENCE_CHARS].rsplit(" ", 1)[0]
        sentence = cut.rstrip(" ,;:") + " …"
    sentence = _LIST_ITEM.sub("", sentence)
    sentence = _MARKER.sub(lambda m: "(" + m.group(1).strip() + ")", sentence)
    if "```" in sentence or sentence.count("`") % 2:
        sentence = sentence.replace("`", "")
    return sentence


def choose(question: str, sources: tuple[PromptSource, ...], limit: int) -> list[_Sentence]:
    """The best ``limit`` distinct sentences of ``sources`` for ``question``, best first (see the
    module docstring for the score)."""
    wanted = set(lexical.analyze(question))
    pool: list[_Sentence] = []
    seen: set[str] = set()
    for rank, source in enumerate(sources):
        for position, raw in enumerate(split_sentences(source.text)):
            key = raw.casefold()
            # Chunks overlap: the same sentence in two neighbours is one sentence.
            if len(raw) < MIN_SENTENCE_CHARS or key in seen or _NOT_PROSE.match(raw):
                continue
            seen.add(key)
            pool.append(_Sentence(source.n, rank, position, raw, frozenset(lexical.analyze(raw))))
    if not pool:
        return []
    df: dict[str, int] = {}
    for s in pool:
        for term in s.terms & wanted:
            df[term] = df.get(term, 0) + 1

    def score(s: _Sentence) -> float:
        shared = s.terms & wanted
        if not shared:
            return 0.0
        weight = sum(math.log(1 + len(pool) / df[t]) for t in shared)
        return weight / (1 + math.log1p(len(s.terms))) / (1 + RANK_DECAY * s.rank)

    scored = sorted(((score(s), s) for s in pool), key=lambda x: (-x[0], x[1].rank, x[1].position))
    best = [s for value, s in scored if value > 0][:limit]
    return best or [min(pool, key=lambda s: (s.rank, s.position))]


class ExtractiveChat(ChatProvider):
    """Quotes the sentences that best match the question (see the module docstring): offline,
    deterministic, instant, and it never follows what a document says."""

    name: ClassVar[str] = "extractive"
    label: ClassVar[str] = "Extractive"
    default_model: ClassVar[str | None] = None
    generative: ClassVar[bool] = False

    def _lines(self, prompt: ChatPrompt) -> list[str]:
        chosen = choose(prompt.question, prompt.sources, self.settings.extractive_sentences)
        return [f"- {_quotable(s.text)} [{s.source}]\n" for s in chosen]

    @override
    def complete(self, prompt: ChatPrompt, *, usage: ChatUsage | None = None) -> str:
        if usage is not None:
            usage.finish_reason = "stop"
        return "".join(self._lines(prompt))

    @override
    def stream(self, prompt: ChatPrompt, *, usage: ChatUsage | None = None) -> Iterator[str]:
        yield from self._lines(prompt)
        if usage is not None:
            usage.finish_reason = "stop"
