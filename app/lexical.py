"""The lexical side of search: BM25 terms of a chunk, written with its dense vector (DESIGN §4).

A chunk's text is analysed into terms, and each term gets the document half of BM25 (Robertson
et al., TREC-3, 1994, in Lucene's form, which drops the constant ``k1 + 1`` factor)::

    weight(t, chunk) = tf / (tf + K1 * (1 - B + B * length / AVG_LENGTH))

The query half, ``idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))``, depends on the other chunks, so
the store applies it when a query runs: Qdrant with a sparse vector's IDF modifier (that exact
formula), pgvector with the same formula over its own counts. ``N`` and ``df`` count only the
searched project's chunks, so one project's texts never change another's ranking. A chunk's score
is ``sum(query_count(t) * idf(t) * weight(t, chunk))`` over the query's terms: the score of bm25s
(``method="lucene"``) and of Lucene itself, except that ``AVG_LENGTH`` is fixed, because the
weight is written once with the chunk and must not change when other chunks come and go.

Analysis (:func:`analyze`) is bm25s's tokenizer: lower case, words of two or more letters or
digits (scikit-learn's ``\\b\\w\\w+\\b``), bm25s's English stop words removed, and the Snowball
English stemmer of PyStemmer. Words of other languages pass through it unharmed (the stemmer
only trims English suffixes, consistently on both sides), so any language that writes spaces
between words indexes and searches. Chinese, Japanese and Korean ideographs and kana are split
into overlapping pairs of characters, as Lucene's ``CJKBigramFilter`` does, because their words
are not separated by spaces.

Constants here are baked into every stored weight: changing them needs a re-vectorize.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from functools import cache
from typing import Any

#: BM25 term-frequency saturation: bm25s's default. Chosen with :data:`B` on BEIR SciFact's train
#: split (the only data tuned on) by replaying the lexical ranking of its 11,625 chunks: nDCG@10
#: 68.59 with Lucene's k1 1.2 / b 0.75, 68.91 with 1.5 / 0.5, flat (68.8-68.96) for k1 1.4-1.6 and
#: b 0.4-0.6. Chunks are of similar length, so they need less length normalisation than the whole
#: documents Lucene's defaults were tuned for.
K1 = 1.5
#: BM25 length normalisation (see :data:`K1`; Lucene, Elasticsearch and bm25s default to 0.75).
B = 0.5
#: Terms of an average chunk, the ``avgdl`` of BM25 fixed in advance. Measured: chunks of the
#: default 1000 characters hold 100-110 terms after stop words (SciFact abstracts: 104, the
#: English documents of the test corpus: 95-115). Short documents (one short chunk) get the
#: usual BM25 boost of short texts.
AVG_LENGTH = 100.0

#: scikit-learn's and bm25s's token pattern.
TOKEN_PATTERN = r"(?u)\b\w\w+\b"
#: Han ideographs, kana and Hangul syllables: scripts written without spaces between words.
_CJK = re.compile(
    "[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f]+"
)


@dataclass(frozen=True, slots=True)
class LexicalVector:
    """A text's terms and their weights: ``{term: weight}``, at most one entry per term.

    For a chunk the weight is the BM25 document half (in ``(0, 1)``); for a query it is the
    number of times the term occurs in the query.
    """

    weights: dict[str, float]

    def __bool__(self) -> bool:
        return bool(self.weights)

    def sparse(self) -> tuple[list[int], list[float]]:
        """``(indices, values)`` for a sparse vector, indices by :func:`term_id`, sorted.

        Two terms with one id (a 32-bit hash collision: rare, and then between rare terms)
        share the entry, their weights added.
        """
        merged: dict[int, float] = {}
        for term, weight in self.weights.items():
            key = term_id(term)
            merged[key] = merged.get(key, 0.0) + weight
        indices = sorted(merged)
        return indices, [merged[i] for i in indices]


@cache
def _stemmer() -> Any:
    import Stemmer  # PyStemmer: Snowball's C stemmers

    return Stemmer.Stemmer("english")


def analyze(text: str) -> list[str]:
    """The terms of ``text``, in order, duplicates kept (see the module docstring).

    >>> analyze("The servers were running RFC-3986 parsers")
    ['server', 'were', 'run', 'rfc', '3986', 'parser']
    """
    import bm25s

    words: list[str] = bm25s.tokenize(
        [text],
        token_pattern=TOKEN_PATTERN,
        stopwords="en",
        stemmer=_stemmer(),
        return_ids=False,
        show_progress=False,
    )[0]
    if not any(_CJK.search(w) for w in words):
        return words
    terms: list[str] = []
    for word in words:
        terms.extend(_split_cjk(word) if _CJK.search(word) else [word])
    return terms


def _split_cjk(word: str) -> list[str]:
    """CJK runs of ``word`` as overlapping character pairs; other parts as they are."""
    parts: list[str] = []
    pos = 0
    for run in _CJK.finditer(word):
        if run.start() > pos and run.start() - pos >= 2:
            parts.append(word[pos : run.start()])
        chars = run.group()
        if len(chars) == 1:
            parts.append(chars)
        parts.extend(chars[i : i + 2] for i in range(len(chars) - 1))
        pos = run.end()
    if len(word) - pos >= 2:
        parts.append(word[pos:])
    return parts


def document_vector(text: str) -> LexicalVector:
    """The BM25 document half of every term of a chunk's ``text`` (empty when it has none)."""
    counts = Counter(analyze(text))
    length = sum(counts.values())
    norm = K1 * (1.0 - B + B * length / AVG_LENGTH)
    return LexicalVector({term: tf / (tf + norm) for term, tf in counts.items()})


def query_vector(text: str) -> LexicalVector:
    """Each term of the query ``text`` with its number of occurrences."""
    return LexicalVector({term: float(n) for term, n in Counter(analyze(text)).items()})


def term_id(term: str) -> int:
    """A stable 32-bit id of ``term`` (BLAKE2b): the index of its sparse-vector dimension.

    Stable across processes and Python versions (unlike ``hash``), so every worker writes a term
    to the same dimension.
    """
    return int.from_bytes(hashlib.blake2b(term.encode("utf-8"), digest_size=4).digest(), "big")


def idf(df: int, n: int) -> float:
    """BM25's inverse document frequency as Lucene and Qdrant's IDF modifier compute it.

    ``ln(1 + (n - df + 0.5) / (df + 0.5))`` for a term found in ``df`` of ``n`` chunks; always
    positive.
    """
    import math

    return math.log(1.0 + (n - df + 0.5) / (df + 0.5))


__all__ = [
    "AVG_LENGTH",
    "K1",
    "B",
    "LexicalVector",
    "analyze",
    "document_vector",
    "idf",
    "query_vector",
    "term_id",
]


def matching_spans(text: str, query: str) -> list[tuple[int, int]]:
    """``(start, end)`` character spans of the words of ``text`` whose term is one of
    ``query``'s (the words lexical search matched), in order, for highlighting.

    >>> matching_spans("Servers run. A server ran.", "running server")
    [(0, 7), (8, 11), (15, 21)]
    """
    wanted = set(analyze(query))
    if not wanted:
        return []
    words = list(re.finditer(TOKEN_PATTERN, text))
    stems = _stemmer().stemWords([w.group().lower() for w in words])
    spans: list[tuple[int, int]] = []
    for word, stem in zip(words, stems, strict=True):
        if stem in wanted or (
            _CJK.search(word.group()) and any(t in wanted for t in _split_cjk(word.group()))
        ):
            spans.append(word.span())
    return spans
